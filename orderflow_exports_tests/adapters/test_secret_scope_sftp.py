"""Against the real sshd: a reference outside the org's scope never reaches the network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_exports.adapters.secrets import SecretScope, SecretUnavailable
from orderflow_exports.adapters.sftp.session import open_sftp_session
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports_tests.adapters.test_sftp_dropzone import TcpProxy
from orderflow_exports_tests.support.sshd import SshdServer

SETTINGS = SftpSettings(
    connect_timeout=5.0, auth_timeout=5.0, operation_timeout=5.0, keepalive_interval=0
)


@pytest.fixture
def counting_proxy(sshd_server: SshdServer) -> Iterator[TcpProxy]:
    """Forwards to the sshd and counts the connections made to it."""
    forwarding = TcpProxy(sshd_server.port)
    try:
        yield forwarding
    finally:
        forwarding.close()


def test_a_cloud_credential_as_password_is_refused_before_connecting(
    sshd_server: SshdServer,
    counting_proxy: TcpProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-the-cloud-secret")
    outbox = sshd_server.root / tmp_path.name
    config = sshd_server.connector_config(
        "acme",
        str(outbox),
        f"{outbox}-acks",
        port=counting_proxy.port,
        private_key_ref=None,
        password_ref="env:AWS_SECRET_ACCESS_KEY",
    )

    with pytest.raises(SecretUnavailable) as caught:
        open_sftp_session(config, SETTINGS).connect()

    assert (caught.value.code, caught.value.transient) == (ErrorCode.CONFIG, False)
    assert "outside org acme's secret scope" in str(caught.value)
    assert "wJalrXUtnFEMI" not in str(caught.value)
    assert counting_proxy.connections == 0  # the value never left for the server


def test_another_orgs_key_file_is_refused_before_connecting(
    sshd_server: SshdServer, counting_proxy: TcpProxy, tmp_path: Path
) -> None:
    outbox = sshd_server.root / tmp_path.name
    globex_key = sshd_server.key_ref("globex")
    config = sshd_server.connector_config(
        "acme", str(outbox), f"{outbox}-acks", port=counting_proxy.port, private_key_ref=globex_key
    )

    with pytest.raises(SecretUnavailable, match="outside org acme's secret folders"):
        open_sftp_session(config, SETTINGS).connect()
    assert counting_proxy.connections == 0


def test_the_orgs_own_scoped_secret_does_connect(
    sshd_server: SshdServer,
    counting_proxy: TcpProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERFLOW_SECRET_ACME_SFTP_KEY", sshd_server.ed25519_key.read_text())
    outbox = sshd_server.root / tmp_path.name
    outbox.mkdir()
    config = sshd_server.connector_config(
        "acme",
        str(outbox),
        f"{outbox}-acks",
        port=counting_proxy.port,
        private_key_ref="env:ORDERFLOW_SECRET_ACME_SFTP_KEY",
    )
    scoped = SftpSettings(
        connect_timeout=5.0,
        auth_timeout=5.0,
        operation_timeout=5.0,
        keepalive_interval=0,
        secrets=SecretScope(()),  # no secret folders: env: references still work
    )
    session = open_sftp_session(config, scoped)
    try:
        session.connect()
        assert session.exists(str(outbox), "none.json") is False
    finally:
        session.close()
    assert counting_proxy.connections == 1
