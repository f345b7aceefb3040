"""AckProcessor over real adapters (CONTRACT §5, §6).

The SQL ledger on SQLite and PostgreSQL, and ack folders on the local file system and over SFTP
to a real OpenSSH server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.application.acks.folder import ERROR_NOTE_SUFFIX, is_ack_candidate
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT, ERP_REJECTED, RejectAck
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import DraftRef, export_filename
from orderflow_exports.domain.ports import DropzoneSession, FolderEntry
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.sshd import SshdServer

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def ledger(engine: Engine) -> SqlExportLedger:
    """The SQL ledger on SQLite and on PostgreSQL (``engine`` comes from conftest)."""
    return SqlExportLedger(engine)


@dataclass
class Zone:
    """A dropzone root reachable by a session and, for assertions, as a local folder.

    Over SFTP the server runs on this machine, so its paths are local paths too.
    """

    session: DropzoneSession
    root: Path
    transport: str
    sshd: SshdServer | None = None

    def config(self, org_id: str, **overrides: Any) -> ConnectorConfig:
        ack = self.root / org_id / "acks"
        out = self.root / org_id / "orders"
        ack.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        if self.sshd is not None:
            return self.sshd.connector_config(org_id, str(out), str(ack), **overrides)
        return ConnectorConfig(
            org_id=org_id, transport="local", export_path=str(out), ack_path=str(ack), **overrides
        )

    def drop(self, config: ConnectorConfig, name: str, data: bytes | dict[str, Any]) -> Path:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        path = Path(config.ack_path) / name
        path.write_bytes(raw)
        return path


@pytest.fixture(params=["local", "sftp"])
def zone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Zone]:
    """The same tests over the local dropzone and over SFTP to the private sshd."""
    if request.param == "local":
        root = tmp_path / "dropzones"
        root.mkdir()
        local = LocalDropzoneSession()
        yield Zone(local, root, "local")
        local.close()
        return
    from orderflow_exports.adapters.sftp.session import open_sftp_session
    from orderflow_exports.adapters.sftp.settings import SftpSettings

    sshd: SshdServer = request.getfixturevalue("sshd_server")
    root = sshd.root / tmp_path.name
    root.mkdir()
    sftp = open_sftp_session(sshd.connector_config("probe", str(root), str(root)), SftpSettings())
    yield Zone(sftp, root, "sftp", sshd)
    sftp.close()


def processor(ledger: SqlExportLedger, **settings: Any) -> AckProcessor:
    """A processor at ``NOW`` that judges acks at once unless a test sets ``settle_seconds``."""
    settings.setdefault("settle_seconds", 0)
    return AckProcessor(ledger, AckSettings(**settings), clock=lambda: NOW)


def make_export(
    ledger: SqlExportLedger,
    org_id: str,
    draft_id: str,
    *,
    status: ExportStatus = ExportStatus.SENT,
    sent_at: datetime = NOW - timedelta(hours=1),
) -> ExportRecord:
    export_id = str(uuid.uuid4())
    ref = DraftRef(org_id, draft_id)
    created = sent_at - timedelta(seconds=5)
    ledger.create_pending(
        NewExport(
            id=export_id,
            ref=ref,
            attempt=1,
            filename=export_filename(ref, created, export_id),
            dropzone_path=f"/{org_id}/orders/x.json",
            storage_key=f"exports/{org_id}/{draft_id}/{export_id}.json",
            content_sha256="0" * 64,
            byte_size=100,
            line_count=1,
            forced=False,
            dagster_run_id=None,
            created_at=created,
        )
    )
    if status is not ExportStatus.PENDING:
        assert ledger.mark_sent(export_id, at=sent_at)
    if status is ExportStatus.ACKED:
        assert ledger.mark_acked(
            export_id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=sent_at
        )
    record = ledger.get(export_id)
    assert record is not None
    return record


def ack(export_id: str, status: str = "ACKED", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "export_id": export_id,
        "status": status,
        "erp_order_number": "SO-1234" if status == "ACKED" else None,
        "message": None if status == "ACKED" else "customer blocked",
        "errors": []
        if status == "ACKED"
        else [{"code": "ITEM", "message": "unknown item", "line_no": 2}],
        "received_at": "2026-11-26T11:59:00Z",
    }
    body.update(fields)
    return body


def files(folder: str | Path, sub: str = "") -> list[str]:
    path = Path(folder) / sub
    return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []


# --- applying acks -----------------------------------------------------------------------------


def test_acked_ack_sets_acked_and_moves_the_file(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "ack-1.json", ack(export.id))

    summary = processor(ledger).process_folder(config, zone.session)

    row = ledger.get(export.id)
    assert row is not None
    assert (row.status, row.erp_order_number, row.acked_at) == (ExportStatus.ACKED, "SO-1234", NOW)
    assert files(config.ack_path) == []
    assert files(config.ack_path, "processed") == ["ack-1.json"]
    [outcome] = summary.applied
    assert outcome.partition_key == "org-a:D-1"
    assert outcome.status is ExportStatus.ACKED
    assert outcome.erp_order_number == "SO-1234"
    assert outcome.received_at == datetime(2026, 11, 26, 11, 59, tzinfo=UTC)
    assert summary.deadline_checked and summary.failure is None


def test_failed_ack_sets_erp_rejected(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "ack-1.json", ack(export.id, "FAILED"))

    summary = processor(ledger).process_folder(config, zone.session)

    row = ledger.get(export.id)
    assert row is not None
    assert row.status is ExportStatus.FAILED
    assert row.error_code == ERP_REJECTED
    assert row.error_message == (
        "ERP rejected the order: customer blocked\n[ITEM] (line 2) unknown item"
    )
    assert files(config.ack_path, "processed") == ["ack-1.json"]
    assert summary.applied[0].error_code == ERP_REJECTED


def test_ack_applies_to_a_pending_export(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1", status=ExportStatus.PENDING)
    zone.drop(config, "ack-1.json", ack(export.id))

    processor(ledger).process_folder(config, zone.session)

    row = ledger.get(export.id)
    assert row is not None and row.status is ExportStatus.ACKED


def test_replayed_ack_changes_nothing(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "ack-1.json", ack(export.id))
    processor(ledger).process_folder(config, zone.session)
    before = ledger.get(export.id)

    # The ERP (or an operator) drops the same ack again, later.
    zone.drop(config, "ack-1.json", ack(export.id))
    later = AckProcessor(ledger, clock=lambda: NOW + timedelta(hours=1))
    summary = later.process_folder(config, zone.session)

    assert ledger.get(export.id) == before
    assert [o.kind for o in summary.outcomes] == ["replayed"]
    assert files(config.ack_path, "processed") == ["ack-1.json", "ack-1.json.1"]
    assert files(config.ack_path, "error") == []


class FailingMoves:
    """A session whose first ``fail`` moves break like a dropped connection."""

    def __init__(self, inner: DropzoneSession, fail: int = 1) -> None:
        self._inner = inner
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        if self.fail:
            self.fail -= 1
            raise ExportError(ErrorCode.CONNECTION, "connection reset", transient=True)
        return self._inner.move_file(folder, name, subfolder)


def test_a_pass_that_died_after_applying_is_finished_by_the_next(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "ack-1.json", ack(export.id))
    session = FailingMoves(zone.session)

    first = processor(ledger).process_folder(config, session)  # type: ignore[arg-type]
    assert first.failure is not None and "connection reset" in first.failure
    assert not first.deadline_checked  # an ack is still waiting
    row = ledger.get(export.id)
    assert row is not None and row.status is ExportStatus.ACKED
    assert files(config.ack_path) == ["ack-1.json"]

    second = processor(ledger).process_folder(config, session)  # type: ignore[arg-type]
    assert [o.kind for o in second.outcomes] == ["replayed"]
    assert ledger.get(export.id) == row
    assert files(config.ack_path, "processed") == ["ack-1.json"]


class StaleFirstRead:
    """A ledger whose first ``get`` answers from before a concurrent pass changed the row."""

    def __init__(self, inner: SqlExportLedger, stale: ExportRecord) -> None:
        self._inner = inner
        self._stale: ExportRecord | None = stale

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get(self, export_id: str) -> ExportRecord | None:
        if self._stale is not None:
            stale, self._stale = self._stale, None
            return stale
        return self._inner.get(export_id)


def test_a_missed_compare_and_set_reads_again(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    # A concurrent pass applied the same ack after our read.
    assert ledger.mark_acked(
        export.id, expected=ExportStatus.SENT, erp_order_number="SO-1234", at=NOW
    )
    zone.drop(config, "ack-1.json", ack(export.id))

    racing = AckProcessor(StaleFirstRead(ledger, export), clock=lambda: NOW)  # type: ignore[arg-type]
    summary = racing.process_folder(config, zone.session)

    assert [o.kind for o in summary.outcomes] == ["replayed"]
    assert files(config.ack_path, "processed") == ["ack-1.json"]


class VanishingFiles:
    """A session that lists a file a concurrent pass has just moved away."""

    def __init__(self, inner: DropzoneSession, ghost: str) -> None:
        self._inner = inner
        self._ghost = ghost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_entries(self, folder: str) -> list[FolderEntry]:
        ghost = FolderEntry(self._ghost, "file", 2, None)
        return sorted([*self._inner.list_entries(folder), ghost], key=lambda e: e.name)


def test_a_file_already_moved_counts_as_done(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    session = VanishingFiles(zone.session, "gone.json")

    summary = processor(ledger).process_folder(config, session)  # type: ignore[arg-type]

    assert [(o.file_name, o.kind) for o in summary.outcomes] == [("gone.json", "vanished")]
    assert summary.failure is None
    assert files(config.ack_path, "error") == []


# --- refused acks ------------------------------------------------------------------------------


def error_note(config: ConnectorConfig, name: str) -> str:
    return (Path(config.ack_path) / "error" / f"{name}{ERROR_NOTE_SUFFIX}").read_text("utf-8")


def test_malformed_ack_goes_to_error_with_its_reason(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    zone.drop(config, "broken.json", b'{"export_id": ')
    zone.drop(config, "bad-status.json", ack(str(uuid.uuid4()), "MAYBE"))

    summary = processor(ledger).process_folder(config, zone.session)

    assert sorted(o.reject_code or "" for o in summary.rejected) == ["MALFORMED", "MALFORMED"]
    assert files(config.ack_path, "error") == [
        "bad-status.json",
        "bad-status.json.error.txt",
        "broken.json",
        "broken.json.error.txt",
    ]
    assert "not valid JSON" in error_note(config, "broken.json")
    assert "unknown status 'MAYBE'" in error_note(config, "bad-status.json")
    assert "org: org-a" in error_note(config, "broken.json")


def test_unknown_export_goes_to_error(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    missing = str(uuid.uuid4())
    zone.drop(config, "ack.json", ack(missing))

    summary = processor(ledger).process_folder(config, zone.session)

    [outcome] = summary.rejected
    assert outcome.reject_code == RejectAck.UNKNOWN_EXPORT
    assert outcome.partition_key is None
    assert f"unknown export {missing}" in error_note(config, "ack.json")


def test_tenant_isolation_ack_for_another_orgs_export(zone: Zone, ledger: SqlExportLedger) -> None:
    config_a = zone.config("org-a")
    zone.config("org-b")
    export_b = make_export(ledger, "org-b", "D-B")
    zone.drop(config_a, "ack.json", ack(export_b.id))

    summary = processor(ledger).process_folder(config_a, zone.session)

    assert ledger.get(export_b.id) == export_b  # nothing updated
    [outcome] = summary.rejected
    assert outcome.reject_code == RejectAck.OTHER_ORG
    # Nothing of org B reaches org A's folder or org A's events.
    assert outcome.partition_key is None and outcome.draft_order_id is None
    note = error_note(config_a, "ack.json")
    assert "org-b" not in note and "D-B" not in note
    assert files(config_a.ack_path, "error") == ["ack.json", "ack.json.error.txt"]


def test_org_id_field_of_another_org_is_refused(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "ack.json", ack(export.id, org_id="org-b"))

    summary = processor(ledger).process_folder(config, zone.session)

    assert ledger.get(export.id) == export
    assert summary.rejected[0].reject_code == RejectAck.ORG_MISMATCH


def test_contradicting_second_ack_goes_to_error(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "ack-1.json", ack(export.id))
    zone.drop(config, "ack-2.json", ack(export.id, "FAILED"))

    summary = processor(ledger).process_folder(config, zone.session)

    assert [o.kind for o in summary.outcomes] == ["applied", "rejected"]
    assert summary.rejected[0].reject_code == RejectAck.CONFLICT
    # The conflict concerns our own export: it may be shown on its partition.
    assert summary.rejected[0].partition_key == "org-a:D-1"
    row = ledger.get(export.id)
    assert row is not None and row.status is ExportStatus.ACKED
    assert files(config.ack_path, "processed") == ["ack-1.json"]
    assert "already ACKED" in error_note(config, "ack-2.json")


def test_too_large_ack_goes_to_error(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(config, "big.json", ack(export.id, message="x" * 5000))

    summary = processor(ledger, max_bytes=1024).process_folder(config, zone.session)

    assert summary.rejected[0].file_name == "big.json"
    assert ledger.get(export.id) == export
    assert "1024" in error_note(config, "big.json")


def test_ignored_names_are_left_alone(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    for name in (
        ".hidden.json",
        ".ack.json.tmp",
        "ack.json.tmp",
        "ack.JSON.TMP",
        "notes.txt",
        ".json",
    ):
        zone.drop(config, name, b"{}")
    (Path(config.ack_path) / "sub.json").mkdir()

    summary = processor(ledger).process_folder(config, zone.session)

    assert summary.outcomes == []
    assert files(config.ack_path) == sorted(
        [".hidden.json", ".ack.json.tmp", "ack.json.tmp", "ack.JSON.TMP", "notes.txt", ".json"]
    )
    # Dot-files and temp files are silent; the others are reported once with their reason.
    assert sorted(summary.skipped) == [("notes.txt", "not named *.json"), ("sub.json", "a folder")]


@pytest.mark.parametrize(
    ("name", "candidate"),
    [
        ("a.json", True),
        ("SO-1.ack.json", True),
        (".a.json", False),
        ("a.json.tmp", False),
        ("a.tmp", False),
        ("a.txt", False),
        (".json", False),
        ("a.JSON", True),
        ("a.Json", True),
        ("a.JSON.TMP", False),
        (".A.JSON", False),
    ],
)
def test_ack_candidates(name: str, candidate: bool) -> None:
    assert is_ack_candidate(name) is candidate


# --- bounds --------------------------------------------------------------------------------------


def test_work_per_pass_is_bounded(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    exports = [make_export(ledger, "org-a", f"D-{n}") for n in range(5)]
    for n, export in enumerate(exports):
        zone.drop(config, f"ack-{n}.json", ack(export.id))
    bounded = processor(ledger, max_files_per_org=2)

    first = bounded.process_folder(config, zone.session)
    assert (len(first.applied), first.deferred, first.deadline_checked) == (2, 3, False)
    assert files(config.ack_path) == ["ack-2.json", "ack-3.json", "ack-4.json"]

    bounded.process_folder(config, zone.session)
    last = bounded.process_folder(config, zone.session)
    assert (len(last.applied), last.deferred, last.deadline_checked) == (1, 0, True)
    assert all(ledger.get(e.id).status is ExportStatus.ACKED for e in exports)  # type: ignore[union-attr]


def test_time_budget_leaves_the_rest_for_the_next_pass(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    for n in range(3):
        zone.drop(config, f"ack-{n}.json", ack(make_export(ledger, "org-a", f"D-{n}").id))
    ticks = iter([0.0, 0.0, 1.0, 5.0])  # start, then before files 0, 1 and 2 (over budget)
    budgeted = AckProcessor(
        ledger,
        AckSettings(time_budget_seconds=5.0),
        clock=lambda: NOW,
        monotonic=lambda: next(ticks),
    )

    summary = budgeted.process_folder(config, zone.session)

    assert (len(summary.applied), summary.deferred) == (2, 1)
    assert files(config.ack_path) == ["ack-2.json"]


# --- the ack deadline --------------------------------------------------------------------------


def test_sent_past_its_deadline_fails_with_ack_timeout(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    overdue = make_export(ledger, "org-a", "D-1", sent_at=NOW - DAY - timedelta(minutes=1))
    fresh = make_export(ledger, "org-a", "D-2", sent_at=NOW - DAY + timedelta(minutes=1))
    acked = make_export(ledger, "org-a", "D-3", status=ExportStatus.ACKED, sent_at=NOW - 3 * DAY)
    pending = make_export(
        ledger, "org-a", "D-4", status=ExportStatus.PENDING, sent_at=NOW - 3 * DAY
    )
    other_org = make_export(ledger, "org-b", "D-5", sent_at=NOW - 3 * DAY)

    summary = processor(ledger).process_folder(config, zone.session)

    row = ledger.get(overdue.id)
    assert row is not None
    assert (row.status, row.error_code) == (ExportStatus.FAILED, ACK_TIMEOUT)
    assert row.error_message is not None and "24 h" in row.error_message
    assert [(t.export_id, t.partition_key) for t in summary.timeouts] == [(overdue.id, "org-a:D-1")]
    for untouched in (fresh, acked, pending, other_org):
        assert ledger.get(untouched.id) == untouched


def test_deadline_is_per_org(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a", ack_deadline_seconds=3600)
    export = make_export(ledger, "org-a", "D-1", sent_at=NOW - timedelta(hours=2))

    processor(ledger).process_folder(config, zone.session)

    row = ledger.get(export.id)
    assert row is not None and row.error_code == ACK_TIMEOUT
    assert row.error_message is not None and "1 h" in row.error_message


def test_an_ack_in_the_folder_beats_the_deadline(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1", sent_at=NOW - 2 * DAY)
    zone.drop(config, "ack.json", ack(export.id))

    summary = processor(ledger).process_folder(config, zone.session)

    row = ledger.get(export.id)
    assert row is not None and row.status is ExportStatus.ACKED
    assert summary.timeouts == []


def test_no_timeouts_while_acks_wait(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    overdue = make_export(ledger, "org-a", "D-1", sent_at=NOW - 2 * DAY)
    for n in range(2):
        zone.drop(config, f"ack-{n}.json", b"not json")

    summary = processor(ledger, max_files_per_org=1).process_folder(config, zone.session)

    assert summary.deferred == 1 and not summary.deadline_checked
    assert ledger.get(overdue.id) == overdue


def test_late_acked_after_timeout_is_parked(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1", sent_at=NOW - 2 * DAY)
    processor(ledger).process_folder(config, zone.session)  # times it out
    zone.drop(config, "late.json", ack(export.id))

    summary = processor(ledger).process_folder(config, zone.session)

    [outcome] = summary.rejected
    assert outcome.reject_code == RejectAck.CONFLICT
    row = ledger.get(export.id)
    assert row is not None and row.error_code == ACK_TIMEOUT
    assert "duplicate" in error_note(config, "late.json")


# --- whole passes --------------------------------------------------------------------------------


class BrokenConnector:
    """A connector whose sessions cannot be opened (server down)."""

    def __init__(self) -> None:
        self.discarded: list[str] = []

    def session_for(self, config: ConnectorConfig) -> DropzoneSession:
        raise ExportError(ErrorCode.CONNECTION, "connection refused", transient=True)

    def discard(self, config: ConnectorConfig) -> None:
        self.discarded.append(config.org_id)

    def close(self) -> None:
        pass


class OneSession:
    """A connector that hands out one given session and records discards."""

    def __init__(self, session: DropzoneSession) -> None:
        self.session = session
        self.discarded: list[str] = []

    def session_for(self, config: ConnectorConfig) -> DropzoneSession:
        return self.session

    def discard(self, config: ConnectorConfig) -> None:
        self.discarded.append(config.org_id)

    def close(self) -> None:
        pass


def test_unreachable_dropzone_times_nothing_out(ledger: SqlExportLedger, tmp_path: Path) -> None:
    config = ConnectorConfig("org-a", "local", str(tmp_path / "out"), str(tmp_path / "acks"))
    overdue = make_export(ledger, "org-a", "D-1", sent_at=NOW - 2 * DAY)

    [summary] = processor(ledger).process_all([config], BrokenConnector())

    assert summary.failure is not None and "connection refused" in summary.failure
    assert ledger.get(overdue.id) == overdue


def test_process_all_skips_disabled_orgs_and_discards_broken_sessions(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    config_a = zone.config("org-a")
    config_b = replace(zone.config("org-b"), enabled=False)
    export_a = make_export(ledger, "org-a", "D-1")
    export_b = make_export(ledger, "org-b", "D-2")
    zone.drop(config_a, "ack.json", ack(export_a.id))
    zone.drop(config_b, "ack.json", ack(export_b.id))
    connector = OneSession(FailingMoves(zone.session))  # type: ignore[arg-type]

    summaries = processor(ledger).process_all([config_a, config_b], connector)

    assert [s.org_id for s in summaries] == ["org-a"]
    assert connector.discarded == ["org-a"]
    assert ledger.get(export_b.id) == export_b
    assert files(config_b.ack_path) == ["ack.json"]
    assert summaries[0].failure is not None and "stopped early" in summaries[0].describe()
    row = ledger.get(export_a.id)
    assert row is not None and row.status is ExportStatus.ACKED
