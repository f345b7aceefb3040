"""A final rename the dropzone answered with a refusal is FAILED and retried, never SENT.

The refusal comes after the run took its rename right, so the row carries ``rename_started_at``
and the service settles the failure by the temp file: it must still be there for the settle rule
to know that nothing was renamed. The refusal is injected at the adapters' rename seam (a local
file system that runs out of room or permission exactly at the link cannot be arranged on
demand, and the test sshd runs as root, whom no folder permission stops); everything else (the
job, the database, the real sshd and its folders) is real.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from paramiko.sftp import SFTP_FAILURE, SFTP_PERMISSION_DENIED

from orderflow_exports.adapters import local_dropzone
from orderflow_exports.adapters.sftp.connection import SftpConnection
from orderflow_exports.adapters.sftp.protocol import SftpStatusError
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.sshd import SshdServer

# What each refusal is recorded as, and whether the step retry of the same run tries again.
LOCAL_REFUSALS = {errno.ENOSPC: ("DISK_FULL", False), errno.EACCES: ("PERMISSION", False)}
SFTP_REFUSALS = {SFTP_PERMISSION_DENIED: ("PERMISSION", False), SFTP_FAILURE: ("IO", True)}


def _run_until_sent(env: OrderflowEnv, key: str, *, retried_in_run: bool) -> None:
    """The first run fails the attempt; its step retry, or else one re-run, sends it."""
    first = env.run_export([key])
    if retried_in_run:
        assert first.success
        assert [e for e in first.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        return
    assert not first.success
    [failed] = env.exports(key)
    assert failed.status is ExportStatus.FAILED  # between the runs: FAILED, never SENT
    assert env.run_export([key]).success


def _assert_failed_then_sent_once(
    rows: list[ExportRecord], outbox: Path, code: str, refused: list[str]
) -> None:
    first, second = rows
    assert refused == [first.filename]  # only the first rename met the refusal
    assert first.status is ExportStatus.FAILED and first.error_code == code
    assert first.rename_started_at is not None  # the refusal came after the claim
    assert first.sent_at is None
    assert second.status is ExportStatus.SENT and second.attempt == 2
    # One file, of the second attempt; neither a temp file nor a copy of the first one.
    assert sorted(os.listdir(outbox)) == [second.filename]


@pytest.mark.parametrize("refusal", sorted(LOCAL_REFUSALS), ids=errno.errorcode.get)
def test_a_local_link_refused_after_the_claim_is_failed_and_sent_once(
    orderflow_env: OrderflowEnv, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=20))
    outbox = env.outbox("acme")
    refused: list[str] = []
    real_link = os.link

    def link(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if not refused and Path(target).parent == outbox:
            refused.append(Path(target).name)
            raise OSError(refusal, os.strerror(refusal), str(target))
        real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(local_dropzone.os, "link", link)
    code, retried_in_run = LOCAL_REFUSALS[refusal]

    _run_until_sent(env, key, retried_in_run=retried_in_run)

    _assert_failed_then_sent_once(env.exports(key), outbox, code, refused)


@pytest.fixture
def sftp_outbox(orderflow_env: OrderflowEnv, sshd_server: SshdServer) -> Path:
    folder = sshd_server.root / f"refused-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    (sshd_server.root / f"{folder.name}-acks").mkdir()
    orderflow_env.configs.upsert(
        sshd_server.connector_config("acme", str(folder), f"{folder}-acks")
    )
    return folder


@pytest.mark.parametrize("status", sorted(SFTP_REFUSALS), ids=["permission_denied", "failure"])
def test_an_sftp_rename_refused_after_the_claim_is_failed_and_sent_once(
    orderflow_env: OrderflowEnv,
    sftp_outbox: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    env = orderflow_env
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=20))
    refused: list[str] = []
    real_rename = SftpConnection.rename
    real_posix_rename = SftpConnection.posix_rename

    def refuse_first(real: Any) -> Any:
        def rename(self: Any, source: str, target: str) -> None:
            if len(refused) < 2:
                # The server's answer to both the plain and the posix rename of attempt 1.
                refused.append(Path(target).name)
                raise SftpStatusError(status, "refused", target)
            real(self, source, target)

        return rename

    monkeypatch.setattr(SftpConnection, "rename", refuse_first(real_rename))
    monkeypatch.setattr(SftpConnection, "posix_rename", refuse_first(real_posix_rename))
    code, retried_in_run = SFTP_REFUSALS[status]

    _run_until_sent(env, key, retried_in_run=retried_in_run)

    rows = env.exports(key)
    assert len(refused) == 2 and refused[0] == refused[1]  # rename, then posix-rename: refused
    _assert_failed_then_sent_once(rows, sftp_outbox, code, refused[:1])
