"""Which configs share a server, a login and a run host tag (``domain/endpoints``)."""

from __future__ import annotations

import pytest

from orderflow_exports.domain.endpoints import (
    LOCAL_HOST,
    dropzone_server,
    endpoint,
    host_tag,
    login_key,
)
from orderflow_exports.domain.records import ConnectorConfig

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample"


def _sftp(org: str, host: str, *, port: int | None = 22, user: str = "erp") -> ConnectorConfig:
    return ConnectorConfig(
        org,
        "sftp",
        f"/{org}/out",
        f"/{org}/acks",
        host=host,
        port=port,
        username=user,
        host_key=HOST_KEY,
        private_key_ref="env:ERP_KEY",
    )


@pytest.mark.parametrize(
    "written", ["erp.example.com", "ERP.Example.COM", "erp.example.com.", " erp.example.com "]
)
def test_one_host_written_differently_gets_one_host_tag_and_one_server(written: str) -> None:
    canonical = _sftp("org_a", "erp.example.com")
    variant = _sftp("org_b", written)
    assert host_tag(variant) == host_tag(canonical) == "erp.example.com"
    assert dropzone_server(variant) == dropzone_server(canonical)


def test_ipv6_brackets_do_not_split_a_host() -> None:
    assert host_tag(_sftp("org_a", "[::1]")) == host_tag(_sftp("org_b", "::1")) == "::1"
    assert dropzone_server(_sftp("org_a", "[::1]")) == ("sftp", "::1", 22)


def test_host_tag_ignores_port_and_user_but_the_server_does_not_ignore_the_port() -> None:
    a = _sftp("org_a", "erp.example.com", port=22, user="alice")
    b = _sftp("org_b", "erp.example.com", port=2222, user="bob")
    assert host_tag(a) == host_tag(b)
    assert dropzone_server(a) != dropzone_server(b)
    assert endpoint(a) != endpoint(b)


def test_a_missing_port_means_22() -> None:
    assert dropzone_server(_sftp("org_a", "h", port=None)) == dropzone_server(_sftp("org_b", "h"))
    assert endpoint(_sftp("org_a", "h", port=None)) == "sftp://erp@h:22"


def test_local_configs_share_one_tag_and_one_server() -> None:
    a = ConnectorConfig("org_a", "local", "/zone/a/out", "/zone/a/acks")
    b = ConnectorConfig("org_b", "local", "/zone/b/out", "/zone/b/acks")
    assert host_tag(a) == host_tag(b) == LOCAL_HOST
    assert dropzone_server(a) == dropzone_server(b) == ("local", "", 0)
    assert endpoint(a) == "local"


def test_a_different_secret_or_host_key_is_a_different_login_on_the_same_endpoint() -> None:
    base = _sftp("org_a", "h")
    other_secret = ConnectorConfig(
        "org_b",
        "sftp",
        "/b/out",
        "/b/acks",
        host="h",
        port=22,
        username="erp",
        host_key=HOST_KEY,
        private_key_ref="env:OTHER_KEY",
    )
    assert endpoint(base) == endpoint(other_secret)
    assert login_key(base) != login_key(other_secret)
    assert login_key(base) == login_key(_sftp("org_c", "h"))
