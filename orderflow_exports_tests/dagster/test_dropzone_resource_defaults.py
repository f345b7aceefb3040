"""The Dagster dropzone resource starts from SftpSettings' defaults, declared only there."""

from __future__ import annotations

import dataclasses

from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.defs.resources import DropzoneResource


def test_an_unconfigured_resource_builds_the_default_sftp_settings() -> None:
    built = DropzoneResource().sftp_settings()

    assert dataclasses.replace(built, secrets=None) == SftpSettings()


def test_configured_values_reach_the_sftp_settings() -> None:
    resource = DropzoneResource(
        connect_timeout_seconds=3.0,
        auth_timeout_seconds=4.0,
        operation_timeout_seconds=5.0,
        keepalive_seconds=0,
        preferred_ciphers=["aes256-ctr"],
        fsync=False,
    )

    built = resource.sftp_settings()

    assert (
        built.connect_timeout,
        built.auth_timeout,
        built.operation_timeout,
        built.keepalive_interval,
        built.preferred_ciphers,
        built.fsync,
    ) == (3.0, 4.0, 5.0, 0, ("aes256-ctr",), False)
