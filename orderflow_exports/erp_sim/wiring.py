"""Builds the simulator's parts from the same settings as the exporter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.domain.records import ConnectorConfig


def connector_source(
    engine: Engine, orgs: Sequence[str] | None = None
) -> Callable[[], list[ConnectorConfig]]:
    """The enabled connectors (only ``orgs`` when given), read again on every pass."""
    configs = SqlConnectorConfigs(engine)
    wanted = set(orgs or [])

    def current() -> list[ConnectorConfig]:
        return [c for c in configs.list(enabled_only=True) if not wanted or c.org_id in wanted]

    return current


def dropzone_connector() -> PooledDropzoneConnector:
    """The exporter's own sessions: pinned host keys, secrets from each org's scope."""
    from orderflow_exports.adapters.secrets import SecretScope
    from orderflow_exports.defs.settings import resolve_secret_dirs

    scope = SecretScope(resolve_secret_dirs(None))

    def sftp_settings() -> Any:
        # Imported only when an org uses SFTP: local-only setups never load paramiko.
        from orderflow_exports.adapters.sftp.settings import SftpSettings

        return SftpSettings(secrets=scope)

    return PooledDropzoneConnector(sftp_settings_factory=sftp_settings)
