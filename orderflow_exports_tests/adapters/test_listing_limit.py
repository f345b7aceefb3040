"""A folder listing is bounded: past its limit the folder is an error for its org, nothing more.

The ack folder belongs to the ERP's side; a folder nobody empties, or a server that lists without
end, must not run the code location out of memory. Local folders and the real test sshd; one
case forges the server's READDIR reply (at the SFTP stream seam) to claim more entries than any
real folder should hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from paramiko.message import Message
from paramiko.sftp import CMD_NAME, CMD_READDIR

from orderflow_exports.adapters.local_dropzone import (
    DEFAULT_MAX_LISTING_ENTRIES,
    LocalDropzoneSession,
)
from orderflow_exports.adapters.sftp.protocol import SftpStream
from orderflow_exports.adapters.sftp.session import open_sftp_session
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.adapters.test_ack_processing import (
    OneSession,
    Zone,
    ack,
    files,
    make_export,
    processor,
)
from orderflow_exports_tests.support.sshd import SshdServer

LIMIT = 5


@pytest.fixture(params=["local", "sftp"])
def small_zone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Zone]:
    """A dropzone whose sessions list at most ``LIMIT`` entries of a folder."""
    if request.param == "local":
        root = tmp_path / "dropzones"
        root.mkdir()
        yield Zone(LocalDropzoneSession(max_listing_entries=LIMIT), root, "local")
        return
    sshd: SshdServer = request.getfixturevalue("sshd_server")
    root = sshd.root / f"limit-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    settings = SftpSettings(max_listing_entries=LIMIT, keepalive_interval=0)
    session = open_sftp_session(sshd.connector_config("probe", str(root), str(root)), settings)
    try:
        yield Zone(session, root, "sftp", sshd)
    finally:
        session.close()


def test_an_ack_folder_over_the_limit_fails_its_org_only(
    small_zone: Zone, ledger: SqlExportLedger
) -> None:
    crowded = small_zone.config("org-a")
    tidy = small_zone.config("org-b")
    waiting = [make_export(ledger, "org-a", f"D-{n}") for n in range(LIMIT + 1)]
    for n, export in enumerate(waiting):
        small_zone.drop(crowded, f"ack-{n}.json", ack(export.id))
    answered = make_export(ledger, "org-b", "D-1")
    small_zone.drop(tidy, "ack-1.json", ack(answered.id))

    summaries = processor(ledger).process_all([crowded, tidy], OneSession(small_zone.session))

    by_org = {summary.org_id: summary for summary in summaries}
    failure = by_org["org-a"].failure or ""
    assert by_org["org-a"].failure_code == ErrorCode.IO
    assert crowded.ack_path in failure and f"more than {LIMIT} entries" in failure
    assert not by_org["org-a"].outcomes and not by_org["org-a"].deadline_checked
    assert len(files(crowded.ack_path)) == LIMIT + 1  # nothing moved, nothing lost
    assert all(ledger.get(e.id) == e for e in waiting)
    # The other org, after it on the same session, is read and applied as usual.
    assert by_org["org-b"].failure is None and len(by_org["org-b"].applied) == 1
    row = ledger.get(answered.id)
    assert row is not None and row.status is ExportStatus.ACKED


def test_a_folder_at_the_limit_is_listed_whole(small_zone: Zone) -> None:
    config = small_zone.config("org-a")
    for n in range(LIMIT):
        (Path(config.ack_path) / f"ack-{n}.json").write_bytes(b"{}")
    listed = small_zone.session.list_entries(config.ack_path)
    assert [e.name for e in listed] == [f"ack-{n}.json" for n in range(LIMIT)]


def _forged_names(count: int) -> Message:
    """A NAME reply body (after its request id) of ``count`` regular-file entries."""
    body = Message()
    body.add_int(count)
    for n in range(count):
        body.add_string(f"ack-{n:05d}.json")
        body.add_string(f"-rw-r--r-- 1 erp erp 2 Nov 26 10:00 ack-{n:05d}.json")
        body.add_int(0)  # no attributes
    return Message(body.asbytes())


def test_a_reply_claiming_more_entries_than_the_limit_is_refused_and_the_session_goes_on(
    sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = sshd_server.root / f"hostile-{uuid.uuid4().hex[:8]}"
    (root / "acks").mkdir(parents=True)
    (root / "acks" / "real.json").write_bytes(b"{}")
    config = sshd_server.connector_config("probe", str(root), str(root / "acks"))
    readdirs: set[int] = set()
    forged: list[int] = []
    real_send = SftpStream.send
    real_reply = SftpStream.reply

    def send(self: Any, t: int, *args: Any) -> int:
        num: int = real_send(self, t, *args)
        if t == CMD_READDIR:
            readdirs.add(num)
        return num

    def reply(self: Any, num: int) -> tuple[int, Message]:
        answer: tuple[int, Message] = real_reply(self, num)  # the stream stays in step
        if num in readdirs and not forged:
            forged.append(num)
            return CMD_NAME, _forged_names(DEFAULT_MAX_LISTING_ENTRIES + 5)
        return answer

    monkeypatch.setattr(SftpStream, "send", send)
    monkeypatch.setattr(SftpStream, "reply", reply)
    session = open_sftp_session(config, SftpSettings(keepalive_interval=0))
    try:
        with pytest.raises(ExportError) as refused:
            session.list_entries(config.ack_path)
        assert refused.value.code == ErrorCode.IO and not refused.value.transient
        assert f"more than {DEFAULT_MAX_LISTING_ENTRIES} entries" in refused.value.message
        assert len(forged) == 1
        # The same connection answers the next listing, now the server's own.
        assert [e.name for e in session.list_entries(config.ack_path)] == ["real.json"]
    finally:
        session.close()


def test_the_sweep_of_a_folder_over_the_limit_does_not_fail(small_zone: Zone) -> None:
    """The sweep is tidiness before a publish: a crowded export folder must not fail it."""
    config = small_zone.config("org-a")
    for n in range(LIMIT * 2):
        (Path(config.export_path) / f"order-{n}.json").write_bytes(b"{}")
    assert small_zone.session.sweep_stale_temps(config.export_path, timedelta(hours=1)) == []
    assert len(files(config.export_path)) == LIMIT * 2
