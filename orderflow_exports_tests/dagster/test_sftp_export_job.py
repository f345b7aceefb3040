"""export_drafts_job over SFTP to the real test sshd: exact bytes, rows, one connection per run."""

import os
import uuid
from pathlib import Path

import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.sshd import SshdServer


@pytest.fixture
def sftp_outbox(sshd_server: SshdServer) -> Path:
    folder = sshd_server.root / f"outbox-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    # The ack folder beside the export folder, never inside it (the connector rules).
    (folder.parent / f"{folder.name}-acks").mkdir()
    return folder


def _configure(env: OrderflowEnv, sshd: SshdServer, org_id: str, outbox: Path, **kw: object):  # type: ignore[no-untyped-def]
    config = sshd.connector_config(org_id, str(outbox), f"{outbox}-acks", **kw)
    env.configs.upsert(config)
    return config


def test_round_trip_through_the_job_over_sftp(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer, sftp_outbox: Path
) -> None:
    env = orderflow_env
    _configure(env, sshd_server, "acme", sftp_outbox)
    keys = env.add_drafts(*(SampleDraft("acme", f"D-{n}", lines=n + 2) for n in range(5)))
    result = env.run_export(keys)
    assert result.success
    names = sorted(n for n in os.listdir(sftp_outbox) if n.endswith(".json"))
    assert len(names) == 5
    for key in keys:
        [row] = env.exports(key)
        assert row.status is ExportStatus.SENT
        on_server = Path(row.dropzone_path).read_bytes()
        assert row.filename in names
        assert len(on_server) == row.byte_size
        # The archived copy was made from the same spool file: byte for byte the server's.
        assert Path(row.storage_key).read_bytes() == on_server
    assert not [n for n in os.listdir(sftp_outbox) if n.endswith(".tmp")]


def test_one_connection_for_a_run_over_many_partitions(
    orderflow_env: OrderflowEnv,
    sshd_server: SshdServer,
    sftp_outbox: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import orderflow_exports.adapters.sftp.session as sftp

    opened: list[str] = []
    original = sftp.open_sftp_session

    def counting_open(config, settings):  # type: ignore[no-untyped-def]
        opened.append(config.org_id)
        return original(config, settings)

    monkeypatch.setattr(sftp, "open_sftp_session", counting_open)
    env = orderflow_env
    _configure(env, sshd_server, "acme", sftp_outbox)
    # Another org on the same server has folders and a secret reference of its own (each org's
    # secrets are scoped to it), so it logs in on a connection of its own.
    other_outbox = sftp_outbox.parent / f"{sftp_outbox.name}-acme2"
    other_outbox.mkdir()
    _configure(env, sshd_server, "acme2", other_outbox)
    keys = env.add_drafts(
        *(SampleDraft("acme", f"D-{n}") for n in range(6)), SampleDraft("acme2", "X-1")
    )
    assert env.run_export(keys).success
    assert opened == ["acme", "acme2"]  # one per org and login, not one per draft
    assert len([n for n in os.listdir(sftp_outbox) if n.endswith(".json")]) == 6
    assert len([n for n in os.listdir(other_outbox) if n.endswith(".json")]) == 1


def test_wrong_host_key_fails_permanently_and_sends_nothing(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer, sftp_outbox: Path
) -> None:
    env = orderflow_env
    _configure(env, sshd_server, "acme", sftp_outbox, host_key=sshd_server.other_host_key_line)
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    result = env.run_export([key])
    assert not result.success
    [row] = env.exports(key)
    assert row.status is ExportStatus.FAILED and row.error_code == "HOST_KEY"
    assert sshd_server.host_key_fingerprint in (row.error_message or "")
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [n for n in os.listdir(sftp_outbox) if n != "acks"] == []


def test_a_refusing_server_fails_its_other_drafts_fast_without_rows(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer, sftp_outbox: Path
) -> None:
    env = orderflow_env
    _configure(env, sshd_server, "acme", sftp_outbox, host_key=sshd_server.other_host_key_line)
    keys = env.add_drafts(*(SampleDraft("acme", f"D-{n}") for n in range(3)))
    result = env.run_export(keys)
    assert not result.success
    rows = [row for key in keys for row in env.exports(key)]
    assert [r.error_code for r in rows] == ["HOST_KEY"]  # one attempt, not one per draft
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data)
    for key in keys[1:]:
        assert f"{key}: HOST_KEY (permanent): [HOST_KEY] not attempted" in message
