"""A rename whose reply is lost is never followed by a second upload (real sshd, job in process).

The one injected fault sits at the adapter's rename seam, because a reply lost exactly after the
server acted cannot be produced on demand: the rename request goes to the real server, the test
waits until the server has performed it, the simulated ERP takes the file at once, and the
connection is closed before the reply is read. A second case drops the connection before the
rename reaches the server, so the temp file is still there afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from paramiko.sftp import CMD_RENAME

from orderflow_exports.adapters.sftp.connection import SftpConnection
from orderflow_exports.adapters.sftp.session import SftpDropzoneSession
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.sshd import SshdServer

HANG_GUARD_SECONDS = 30.0


@pytest.fixture
def outbox(orderflow_env: OrderflowEnv, sshd_server: SshdServer) -> Path:
    folder = sshd_server.root / f"lost-reply-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    (sshd_server.root / f"{folder.name}-acks").mkdir()  # beside the outbox, never inside it
    orderflow_env.configs.upsert(
        sshd_server.connector_config("acme", str(folder), f"{folder}-acks")
    )
    return folder


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of every temp file uploaded (one entry per upload)."""
    seen: list[str] = []
    real = SftpDropzoneSession._write_temp

    def counting(self: Any, conn: Any, handle: bytes, path: str, *args: Any) -> Any:
        seen.append(path)
        return real(self, conn, handle, path, *args)

    monkeypatch.setattr(SftpDropzoneSession, "_write_temp", counting)
    return seen


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not path.exists():
        assert time.monotonic() < deadline, f"the server never renamed to {path}"
        time.sleep(0.005)


def _drop_after_the_server_renamed(taken: list[str]) -> Any:
    real = SftpConnection.rename

    def rename(self: Any, source: str, target: str) -> None:
        if taken:  # only the first rename meets the fault
            real(self, source, target)
            return
        number = self.send(CMD_RENAME, source, target)
        self.stream.flush()  # requests are queued until a reply is awaited: send it now
        final = Path(target)
        _wait_for(final)  # the server performed the rename ...
        final.unlink()  # ... the ERP took the file at once ...
        taken.append(final.name)
        self.abandon([number])
        self.transport.close()  # ... and the connection dropped before the reply was read
        raise EOFError("the connection dropped before the reply to the rename arrived")

    return rename


def _drop_before_the_rename(dropped: list[str]) -> Any:
    real = SftpConnection.rename

    def rename(self: Any, source: str, target: str) -> None:
        if not dropped:
            dropped.append(target)
            self.transport.close()  # the request never reaches the server
        real(self, source, target)

    return rename


def test_lost_reply_after_the_erp_took_the_file_sends_no_second_copy(
    orderflow_env: OrderflowEnv,
    outbox: Path,
    uploads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = orderflow_env
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=50))
    taken: list[str] = []
    monkeypatch.setattr(SftpConnection, "rename", _drop_after_the_server_renamed(taken))

    result = env.run_export([key])

    assert result.success
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT and row.sent_at is not None  # SENT, unconfirmed
    assert row.rename_started_at is not None
    assert taken == [row.filename]  # the one copy the ERP took
    assert len(uploads) == 1  # nothing uploaded again
    assert os.listdir(outbox) == []  # no second copy, no temp file left
    assert Path(row.storage_key).is_file()  # archived: the ERP may hold exactly these bytes


def test_lost_connection_before_the_rename_reached_the_server_fails_and_retries_once(
    orderflow_env: OrderflowEnv,
    outbox: Path,
    uploads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = orderflow_env
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=50))
    dropped: list[str] = []
    monkeypatch.setattr(SftpConnection, "rename", _drop_before_the_rename(dropped))

    result = env.run_export([key])

    assert result.success
    first, second = env.exports(key)
    # Its temp file was still there: taken away, so no rename of it can land any more; FAILED.
    assert first.status is ExportStatus.FAILED and first.error_code == "CONNECTION"
    assert "outcome is unknown" in (first.error_message or "")
    assert second.status is ExportStatus.SENT and second.attempt == 2
    assert len(uploads) == 2  # one per attempt, never twice for one attempt
    assert sorted(os.listdir(outbox)) == [second.filename]
