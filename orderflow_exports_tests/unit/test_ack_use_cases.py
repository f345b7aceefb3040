"""The ack use cases (``application/acks``) on in-memory fakes: every branch of a folder pass.

``FakeLedger`` keeps the SQL ledger's compare-and-set and ``FakeDropzone`` fails any operation on
demand, so each test states one situation of an ERP's ack folder and checks the row, the file
and the report that result from it, in milliseconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orderflow_exports.application.acks.folder import ERROR_NOTE_SUFFIX
from orderflow_exports.application.acks.isolation import still_busy
from orderflow_exports.application.acks.memory import AckPassMemory, OrgMemory
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.dropzone import FakeDropzone, FakeDropzoneSession
from orderflow_exports_tests.fakes.history import add_attempt
from orderflow_exports_tests.fakes.ledger import FakeLedger

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SENT_AT = NOW - timedelta(minutes=5)


class RecordingLog:
    """A ``Logger`` that keeps every line with its level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, msg: str, args: tuple[object, ...]) -> None:
        self.lines.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: object) -> None:
        self._add("info", msg, args)

    def warning(self, msg: str, *args: object) -> None:
        self._add("warning", msg, args)

    def error(self, msg: str, *args: object) -> None:
        self._add("error", msg, args)

    def at(self, level: str) -> list[str]:
        return [line for lvl, line in self.lines if lvl == level]


def config_of(org: str = "org_a", **overrides: Any) -> ConnectorConfig:
    return ConnectorConfig(org, "local", f"/zone/{org}/out", f"/zone/{org}/acks", **overrides)


def ack(export_id: str, status: str = "ACKED", **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "export_id": export_id,
        "status": status,
        "received_at": "2026-12-03T11:59:00Z",
    }
    if status == "ACKED":
        body["erp_order_number"] = "SO-1"
    else:
        body["message"] = "unknown SKU"
    body.update(fields)
    return json.dumps(body).encode()


class AckWorld:
    """A ledger, a dropzone and a processor sharing one clock.

    ``elapsed`` is the monotonic clock the pass measures its budgets by; tests advance it.
    """

    def __init__(self, settings: AckSettings | None = None) -> None:
        self.now = NOW
        self.elapsed = 0.0
        self.ledger = FakeLedger()
        self.zone = FakeDropzone(clock=lambda: self.now.timestamp())
        self.log = RecordingLog()
        self.settings = settings or AckSettings(settle_seconds=0)
        self.processor = self._processor(self.ledger)

    def _processor(self, ledger: Any) -> AckProcessor:
        if self.settings.org_time_budget_seconds is not None:
            # Per-org deadlines are joined in real time: measure them by the real clock.
            return AckProcessor(ledger, self.settings, clock=lambda: self.now, log=self.log)
        return AckProcessor(
            ledger,
            self.settings,
            clock=lambda: self.now,
            monotonic=lambda: self.elapsed,
            log=self.log,
        )

    def with_ledger(self, ledger: Any) -> AckWorld:
        self.processor = self._processor(ledger)
        return self

    def export(self, org: str = "org_a", draft: str = "d1", ending: Any = "SENT") -> str:
        self.zone.make_folder(f"/zone/{org}/acks")
        return add_attempt(self.ledger, DraftRef(org, draft), 1, ending, SENT_AT)

    def drop(self, name: str, data: bytes, org: str = "org_a", **kw: Any) -> None:
        self.zone.put(f"/zone/{org}/acks", name, data, **kw)

    def session(self) -> FakeDropzoneSession:
        return FakeDropzoneSession(self.zone)

    def folder_pass(self, config: ConnectorConfig | None = None, **kw: Any) -> Any:
        return self.processor.process_folder(config or config_of(), self.session(), **kw)

    def names(self, sub: str = "", org: str = "org_a") -> list[str]:
        return self.zone.names(f"/zone/{org}/acks/{sub}".rstrip("/"))

    def status(self, export_id: str) -> ExportStatus:
        row = self.ledger.get(export_id)
        assert row is not None
        return row.status


@pytest.fixture
def world() -> AckWorld:
    return AckWorld()


# --- applying answers ------------------------------------------------------------------------


def test_an_ack_of_a_sent_export_acks_it_and_moves_the_file_to_processed(world: AckWorld) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id, erp_order_number="SO-77"))
    summary = world.folder_pass()
    row = world.ledger.get(export_id)
    assert row is not None and row.status is ExportStatus.ACKED
    assert row.erp_order_number == "SO-77" and row.acked_at == NOW
    assert [o.kind for o in summary.outcomes] == ["applied"]
    outcome = summary.outcomes[0]
    assert outcome.partition_key == "org_a:d1" and outcome.erp_order_number == "SO-77"
    assert outcome.moved_to == "/zone/org_a/acks/processed/a1.json"
    assert world.names() == ["processed"] and world.names("processed") == ["a1.json"]
    assert summary.deadline_checked and summary.failure is None


def test_an_ack_may_overtake_the_sent_update(world: AckWorld) -> None:
    export_id = world.export(ending="PENDING")
    world.drop("a1.json", ack(export_id))
    world.folder_pass()
    assert world.status(export_id) is ExportStatus.ACKED


def test_a_failed_ack_fails_the_export_as_erp_rejected_with_the_erp_message(
    world: AckWorld,
) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id, "FAILED", message="unknown SKU X-9"))
    summary = world.folder_pass()
    row = world.ledger.get(export_id)
    assert row is not None and row.status is ExportStatus.FAILED
    assert row.error_code == ErrorCode.ERP_REJECTED and "unknown SKU X-9" in (
        row.error_message or ""
    )
    assert row.error_transient is False
    assert summary.outcomes[0].error_code == ErrorCode.ERP_REJECTED
    assert world.names("processed") == ["a1.json"]


def test_a_replayed_ack_changes_nothing_and_is_still_moved(world: AckWorld) -> None:
    export_id = world.export(ending="ACKED")
    before = world.ledger.get(export_id)
    world.drop("a1.json", ack(export_id, erp_order_number=None))
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["replayed"]
    assert world.ledger.get(export_id) == before
    assert world.names("processed") == ["a1.json"]


def test_a_contradicting_ack_of_a_terminal_export_is_parked_in_error_with_a_note(
    world: AckWorld,
) -> None:
    export_id = world.export(ending=ErrorCode.ACK_TIMEOUT)
    before = world.ledger.get(export_id)
    world.drop("a1.json", ack(export_id))
    summary = world.folder_pass()
    assert [(o.kind, o.reject_code) for o in summary.outcomes] == [("rejected", "CONFLICT")]
    assert world.ledger.get(export_id) == before
    assert world.names("error") == ["a1.json", "a1.json" + ERROR_NOTE_SUFFIX]
    note = world.zone.data("/zone/org_a/acks/error", "a1.json" + ERROR_NOTE_SUFFIX).decode()
    assert "code: CONFLICT" in note and "org: org_a" in note
    assert any("CONFLICT" in line for line in world.log.at("error"))


def test_an_ack_for_an_unknown_export_is_parked_and_only_warned_about(world: AckWorld) -> None:
    world.export()
    world.drop("a1.json", ack("0b3f2e0c-1111-4222-8333-444455556666"))
    summary = world.folder_pass()
    assert summary.outcomes[0].reject_code == "UNKNOWN_EXPORT"
    assert world.names("error")[0] == "a1.json"
    assert any("UNKNOWN_EXPORT" in line for line in world.log.at("warning"))


def test_an_ack_for_another_orgs_export_changes_nothing_and_reveals_nothing(
    world: AckWorld,
) -> None:
    theirs = world.export(org="org_b")
    world.export(org="org_a", draft="d9")
    before = world.ledger.get(theirs)
    world.drop("a1.json", ack(theirs), org="org_a")
    summary = world.folder_pass()
    assert world.ledger.get(theirs) == before
    outcome = summary.outcomes[0]
    assert outcome.reject_code == "OTHER_ORG" and outcome.draft_order_id is None
    note = world.zone.data("/zone/org_a/acks/error", "a1.json" + ERROR_NOTE_SUFFIX).decode()
    assert "org_b" not in note and "d1" not in note
    # The operator's log names the owner; it is an error, not a stray file.
    assert any("belongs to org 'org_b'" in line for line in world.log.at("error"))


def test_an_ack_naming_another_org_is_refused_before_the_row_is_read(world: AckWorld) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id, org_id="org_b"))
    summary = world.folder_pass()
    assert summary.outcomes[0].reject_code == "ORG_MISMATCH"
    assert world.status(export_id) is ExportStatus.SENT


# --- racing other writers --------------------------------------------------------------------


class _AckedMeanwhile(FakeLedger):
    """A ledger on which a concurrent pass acks the export just before our compare-and-set."""

    def __init__(self, base: FakeLedger, erp_order_number: str) -> None:
        super().__init__()
        self._rows = base._rows  # the same rows
        self._base = base
        self._erp_order_number = erp_order_number
        self.raced = 0

    def mark_acked(self, export_id: str, **kw: Any) -> bool:
        if not self.raced:
            self.raced += 1
            assert self._base.mark_acked(
                export_id,
                expected=ExportStatus.SENT,
                erp_order_number=self._erp_order_number,
                at=NOW,
            )
        return super().mark_acked(export_id, **kw)


def test_a_compare_and_set_lost_to_a_concurrent_pass_becomes_a_replay(world: AckWorld) -> None:
    export_id = world.export()
    racing = _AckedMeanwhile(world.ledger, "SO-1")
    world.with_ledger(racing)
    world.drop("a1.json", ack(export_id, erp_order_number="SO-1"))
    summary = world.folder_pass()
    assert racing.raced == 1
    assert [o.kind for o in summary.outcomes] == ["replayed"]
    assert world.names("processed") == ["a1.json"]


def test_a_lost_race_against_a_different_answer_is_a_conflict_not_an_overwrite(
    world: AckWorld,
) -> None:
    export_id = world.export()
    world.with_ledger(_AckedMeanwhile(world.ledger, "SO-OTHER"))
    world.drop("a1.json", ack(export_id, erp_order_number="SO-1"))
    summary = world.folder_pass()
    row = world.ledger.get(export_id)
    assert row is not None and row.erp_order_number == "SO-OTHER"
    assert summary.outcomes[0].reject_code == "CONFLICT"


class _NeverSets(FakeLedger):
    """A ledger whose row keeps moving: every compare-and-set misses."""

    def __init__(self, base: FakeLedger) -> None:
        super().__init__()
        self._rows = base._rows
        self.tries = 0

    def mark_acked(self, export_id: str, **kw: Any) -> bool:
        self.tries += 1
        return False


def test_a_row_that_never_settles_leaves_the_ack_in_place_for_the_next_pass(
    world: AckWorld,
) -> None:
    export_id = world.export()
    never = _NeverSets(world.ledger)
    world.with_ledger(never)
    world.drop("a1.json", ack(export_id))
    summary = world.folder_pass()
    assert never.tries == 2
    assert summary.outcomes == [] and world.names() == ["a1.json"]
    assert world.status(export_id) is ExportStatus.SENT
    assert any("kept changing" in line for line in world.log.at("warning"))


def test_an_ack_moved_by_a_concurrent_pass_counts_as_done(world: AckWorld) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id))

    def concurrent_pass_moves_it(path: str) -> None:
        world.zone.put(
            "/zone/org_a/acks/processed", "a1.json", world.zone.take("/zone/org_a/acks", "a1.json")
        )

    world.zone.on("move_file", concurrent_pass_moves_it)
    world.zone.fail("move_file", ExportError(ErrorCode.IO, "gone", transient=False))
    summary = world.folder_pass()
    assert world.status(export_id) is ExportStatus.ACKED
    assert [(o.kind, o.moved_to) for o in summary.outcomes] == [("applied", None)]
    assert summary.failure is None and summary.stuck == []
    assert world.names() == ["processed"] and world.names("processed") == ["a1.json"]


def test_a_replayed_ack_moved_by_a_concurrent_pass_is_vanished(world: AckWorld) -> None:
    export_id = world.export(ending="ACKED")
    world.drop("a1.json", ack(export_id, erp_order_number=None))
    world.zone.on("move_file", lambda path: world.zone.take("/zone/org_a/acks", "a1.json"))
    world.zone.fail("move_file", ExportError(ErrorCode.IO, "gone", transient=False))
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["vanished"]
    assert summary.failure is None


# --- files that are not (yet) acks -----------------------------------------------------------


def test_an_unparsable_ack_waits_until_it_settles_then_goes_to_error() -> None:
    world = AckWorld(AckSettings(settle_seconds=30))
    world.export()
    world.drop("a1.json", b'{"export_id": ')  # still being written
    first = world.folder_pass()
    assert [o.kind for o in first.outcomes] == ["waiting"]
    assert first.deferred == 1 and not first.deadline_checked
    assert world.names() == ["a1.json"]
    # The same size and time a pass later: finished, and refused.
    second = world.folder_pass(memory=first.memory)
    assert [(o.kind, o.reject_code) for o in second.outcomes] == [("rejected", "MALFORMED")]
    assert world.names("error") == ["a1.json", "a1.json" + ERROR_NOTE_SUFFIX]
    assert second.deadline_checked


def test_an_ack_that_grows_between_listing_and_reading_is_not_judged() -> None:
    world = AckWorld(AckSettings(settle_seconds=0))
    export_id = world.export()
    world.drop("a1.json", b"{")

    def writer_finishes(path: str) -> None:
        world.drop("a1.json", ack(export_id)[:-1], mtime=0.0)

    world.zone.on("read_file", writer_finishes)
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["waiting"]
    assert world.names() == ["a1.json"]


def test_an_oversized_ack_is_refused_as_unreadable_once_settled() -> None:
    world = AckWorld(AckSettings(settle_seconds=30, max_bytes=64))
    export_id = world.export()
    world.drop("big.json", ack(export_id, message="x" * 200))
    first = world.folder_pass()
    # Still growing, perhaps: not judged on the first look.
    assert [o.kind for o in first.outcomes] == ["waiting"] and world.names() == ["big.json"]
    second = world.folder_pass(memory=first.memory)
    assert [(o.kind, o.reject_code) for o in second.outcomes] == [("rejected", "UNREADABLE")]
    assert world.status(export_id) is ExportStatus.SENT
    assert world.names("error")[0] == "big.json"


def test_entries_that_are_not_acks_are_left_alone_and_logged_once(world: AckWorld) -> None:
    world.export()
    world.drop("readme.txt", b"hello")
    world.zone.plant("/zone/org_a/acks", "link.json", "symlink")
    world.zone.plant("/zone/org_a/acks", "pipe.json", "fifo")
    world.drop(".a1.json.tmp", b"{")  # an ERP's own temp file: quietly ignored
    first = world.folder_pass()
    assert sorted(name for name, _ in first.skipped) == ["link.json", "pipe.json", "readme.txt"]
    assert first.outcomes == [] and first.deadline_checked
    second = world.folder_pass(memory=first.memory)
    assert second.skipped == []
    assert len(world.log.at("warning")) == 3
    assert world.names() == [".a1.json.tmp", "link.json", "pipe.json", "readme.txt"]


def test_an_ack_swapped_for_a_symlink_after_the_listing_is_never_followed(
    world: AckWorld,
) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id))
    world.zone.on(
        "read_file", lambda path: world.zone.plant("/zone/org_a/acks", "a1.json", "symlink")
    )
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["skipped"]
    assert world.status(export_id) is ExportStatus.SENT
    assert world.names() == ["a1.json"]


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_processed_or_error_that_is_not_a_folder_stops_the_org_untouched(
    world: AckWorld, kind: str
) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id))
    if kind == "symlink":
        world.zone.plant("/zone/org_a/acks", "processed", "symlink")
    else:
        world.drop("error", b"")
    summary = world.folder_pass()
    assert summary.failure_code == ErrorCode.CONFIG and "not a folder" in (summary.failure or "")
    assert world.status(export_id) is ExportStatus.SENT and not summary.deadline_checked


# --- a folder that cannot be read, a session that breaks ----------------------------------------


def test_an_unreadable_folder_times_nothing_out_and_keeps_the_memory(world: AckWorld) -> None:
    overdue = world.export(draft="old")
    world.now = NOW + timedelta(days=30)
    world.zone.fail("list_entries", ExportError(ErrorCode.PERMISSION, "denied"))
    memory = OrgMemory(skipped=["k"], unsettled={"u": (1, 2.0)})
    summary = world.folder_pass(memory=memory)
    assert summary.failure_code == ErrorCode.PERMISSION and summary.timeouts == []
    assert world.status(overdue) is ExportStatus.SENT
    assert summary.memory is not None and summary.memory.skipped == ["k"]
    assert summary.memory.unsettled == {"u": (1, 2.0)}


def test_a_transient_read_failure_stops_the_pass_and_leaves_every_ack(world: AckWorld) -> None:
    first, second = world.export(draft="d1"), world.export(draft="d2")
    world.drop("a1.json", ack(first))
    world.drop("a2.json", ack(second))
    world.zone.fail("read_file", ExportError(ErrorCode.CONNECTION, "reset"))
    summary = world.folder_pass()
    assert summary.failure_code == ErrorCode.CONNECTION and summary.deferred == 2
    assert not summary.deadline_checked
    assert world.status(first) is ExportStatus.SENT and world.status(second) is ExportStatus.SENT
    # The next pass, on a healthy session, applies both.
    world.folder_pass()
    assert world.status(first) is ExportStatus.ACKED and world.status(second) is ExportStatus.ACKED


def test_a_transient_move_failure_keeps_the_row_change_and_the_next_pass_replays(
    world: AckWorld,
) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id))
    world.zone.fail("move_file", ExportError(ErrorCode.CONNECTION, "reset"))
    summary = world.folder_pass()
    assert world.status(export_id) is ExportStatus.ACKED
    assert summary.failure_code == ErrorCode.CONNECTION and world.names() == ["a1.json"]
    again = world.folder_pass()
    assert [o.kind for o in again.outcomes] == ["replayed"]
    assert world.names("processed") == ["a1.json"]


def test_a_file_that_cannot_be_moved_for_good_is_stuck_and_the_pass_goes_on(
    world: AckWorld,
) -> None:
    first, second = world.export(draft="d1"), world.export(draft="d2")
    world.drop("a1.json", ack(first))
    world.drop("a2.json", ack(second))
    world.zone.fail("move_file", ExportError(ErrorCode.PERMISSION, "read-only"))
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["stuck", "applied"]
    assert world.names() == ["a1.json", "processed"]
    assert world.status(first) is ExportStatus.ACKED and world.status(second) is ExportStatus.ACKED
    assert any("stuck" in line for line in world.log.at("error"))


def test_a_note_that_cannot_be_written_still_parks_the_file(world: AckWorld) -> None:
    world.export()
    world.drop("a1.json", b"not json")
    world.zone.fail("write_file", ExportError(ErrorCode.DISK_FULL, "full"))
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["rejected"]
    assert world.names("error") == ["a1.json"]
    assert any("could not write" in line for line in world.log.at("warning"))


# --- bounds and the ack deadline -------------------------------------------------------------


def test_the_deadline_expires_overdue_exports_only_after_every_ack_was_handled() -> None:
    world = AckWorld(AckSettings(settle_seconds=0, max_files_per_org=1))
    answered, silent = world.export(draft="d1"), world.export(draft="d2")
    other = world.export(draft="d3")
    world.drop("a1.json", ack(answered))
    world.drop("a3.json", ack(other))
    world.now = NOW + timedelta(days=30)
    first = world.folder_pass()
    # One file per pass: the other ack waits, and so does the deadline.
    assert first.deferred == 1 and not first.deadline_checked and first.timeouts == []
    assert world.status(silent) is ExportStatus.SENT
    second = world.folder_pass()
    assert second.deadline_checked
    assert [t.export_id for t in second.timeouts] == [silent]
    row = world.ledger.get(silent)
    assert row is not None and row.error_code == ErrorCode.ACK_TIMEOUT
    assert (
        world.status(answered) is ExportStatus.ACKED and world.status(other) is ExportStatus.ACKED
    )


def test_the_deadline_respects_the_orgs_own_limit_and_the_per_pass_cap() -> None:
    world = AckWorld(AckSettings(settle_seconds=0, max_timeouts_per_org=2))
    ids = [world.export(draft=f"d{i}") for i in range(3)]
    config = config_of(ack_deadline_seconds=600)
    world.now = SENT_AT + timedelta(seconds=599)
    assert world.folder_pass(config).timeouts == []
    world.now = SENT_AT + timedelta(seconds=601)
    assert len(world.folder_pass(config).timeouts) == 2
    assert len(world.folder_pass(config).timeouts) == 1
    assert all(world.status(i) is ExportStatus.FAILED for i in ids)


def test_a_pass_over_its_time_budget_leaves_the_remaining_files() -> None:
    world = AckWorld(AckSettings(settle_seconds=0, time_budget_seconds=5))
    first, second = world.export(draft="d1"), world.export(draft="d2")
    world.drop("a1.json", ack(first))
    world.drop("a2.json", ack(second))

    def slow_read(path: str) -> None:
        world.elapsed += 10

    world.zone.on("read_file", slow_read)
    summary = world.folder_pass()
    assert len(summary.applied) == 1 and summary.deferred == 1 and not summary.deadline_checked
    assert world.status(first) is ExportStatus.ACKED and world.status(second) is ExportStatus.SENT


# --- whole passes over several orgs ----------------------------------------------------------


def _all(world: AckWorld, configs: list[ConnectorConfig], **kw: Any) -> dict[str, Any]:
    summaries = world.processor.process_all(configs, connector=world.zone, **kw)
    return {s.org_id: s for s in summaries}


def test_one_orgs_broken_login_does_not_stop_the_others(world: AckWorld) -> None:
    a, b = world.export(org="org_a"), world.export(org="org_b")
    world.drop("a.json", ack(a), org="org_a")
    world.drop("b.json", ack(b), org="org_b")
    attempts = []

    def refuse_the_first_login(endpoint: str) -> None:
        attempts.append(endpoint)
        if len(attempts) == 1:
            raise ExportError(ErrorCode.AUTH, "login refused")

    world.zone.on("connect", refuse_the_first_login)
    by_org = _all(world, [config_of("org_a"), config_of("org_b")])
    assert by_org["org_a"].failure_code == ErrorCode.AUTH
    assert world.status(a) is ExportStatus.SENT and world.status(b) is ExportStatus.ACKED


def test_a_disabled_org_is_not_served_but_its_folders_still_guard_the_others(
    world: AckWorld,
) -> None:
    theirs = world.export(org="org_b")
    world.drop("b.json", ack(theirs), org="org_b")
    disabled = config_of("org_b", enabled=False)
    # org_c reads org_b's ack folder: refused, and org_b's file is not touched.
    thief = ConnectorConfig("org_c", "local", "/zone/org_c/out", "/zone/org_b/acks")
    by_org = _all(world, [disabled, thief])
    assert "org_b" not in by_org
    assert by_org["org_c"].failure_code == ErrorCode.CONFIG
    assert world.names(org="org_b") == ["b.json"] and world.status(theirs) is ExportStatus.SENT


def test_exactly_one_of_connector_and_factory_is_required(world: AckWorld) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        world.processor.process_all([config_of()])
    with pytest.raises(ValueError, match="exactly one"):
        world.processor.process_all(
            [config_of()], connector=world.zone, connector_factory=lambda: world.zone
        )


def test_orgs_after_the_pass_budget_are_not_reached_and_the_next_pass_starts_there() -> None:
    world = AckWorld(AckSettings(settle_seconds=0, time_budget_seconds=5))

    def slow_listing(folder: str) -> None:
        world.elapsed += 6

    for org in ("org_a", "org_b", "org_c"):
        world.zone.make_folder(f"/zone/{org}/acks")
    world.zone.on("list_entries", slow_listing)
    summaries = world.processor.run_pass(
        [config_of("org_c"), config_of("org_a"), config_of("org_b")],
        connector_factory=lambda: world.zone,
    )
    assert [(s.org_id, s.not_reached) for s in summaries] == [
        ("org_a", False),
        ("org_b", True),
        ("org_c", True),
    ]
    assert any("not reached" in line for line in world.log.at("info"))
    again = world.processor.run_pass(
        [config_of("org_a"), config_of("org_b"), config_of("org_c")],
        connector_factory=lambda: world.zone,
        start_after="org_a",
    )
    assert [s.org_id for s in again][0] == "org_b"


def test_a_hanging_org_is_abandoned_and_the_next_org_is_served() -> None:
    release = threading.Event()
    world = AckWorld(AckSettings(settle_seconds=0, org_time_budget_seconds=0.3))
    hung, fine = world.export(org="hang_org"), world.export(org="fine_org")
    world.drop("h.json", ack(hung), org="hang_org")
    world.drop("f.json", ack(fine), org="fine_org")

    def hang(folder: str) -> None:
        if folder.startswith("/zone/hang_org"):
            release.wait(30)

    world.zone.on("list_entries", hang)
    factories: list[FakeDropzone] = []

    def factory() -> FakeDropzone:
        factories.append(world.zone)
        return world.zone

    try:
        by_org = {
            s.org_id: s
            for s in world.processor.process_all(
                [config_of("hang_org"), config_of("fine_org")], connector_factory=factory
            )
        }
        assert by_org["hang_org"].timed_out and by_org["hang_org"].failure_code == ErrorCode.TIMEOUT
        assert world.status(fine) is ExportStatus.ACKED
        assert world.status(hung) is ExportStatus.SENT
        # The abandoned worker is still blocked: the next pass does not start a second one.
        again = world.processor.process_all([config_of("hang_org")], connector_factory=factory)
        assert again[0].timed_out and "still blocked" in (again[0].failure or "")
    finally:
        release.set()
    _wait_until(lambda: not still_busy("hang_org"))
    # Released after its org's deadline, the late worker starts no file: the ack waits.
    assert world.status(hung) is ExportStatus.SENT and world.names(org="hang_org") == ["h.json"]


def test_an_unexpected_error_in_one_org_is_reported_and_the_pass_goes_on() -> None:
    world = AckWorld(AckSettings(settle_seconds=0, org_time_budget_seconds=5))
    fine = world.export(org="fine_org")
    world.export(org="bug_org")
    world.drop("f.json", ack(fine), org="fine_org")

    def bug(folder: str) -> None:
        if folder.startswith("/zone/bug_org"):
            raise RuntimeError("a bug")

    world.zone.on("list_entries", bug)
    by_org = {
        s.org_id: s
        for s in world.processor.process_all(
            [config_of("bug_org"), config_of("fine_org")], connector_factory=lambda: world.zone
        )
    }
    assert by_org["bug_org"].failure_code == ErrorCode.IO
    assert "a bug" in (by_org["bug_org"].failure or "")
    assert world.status(fine) is ExportStatus.ACKED


def test_pass_memory_is_per_org(world: AckWorld) -> None:
    world.export(org="org_a")
    world.export(org="org_b")
    world.drop("note.txt", b"x", org="org_a")
    world.drop("note.txt", b"x", org="org_b")
    first = _all(world, [config_of("org_a"), config_of("org_b")])
    memory = AckPassMemory({"org_a": first["org_a"].memory})
    second = _all(world, [config_of("org_a"), config_of("org_b")], memory=memory)
    assert second["org_a"].skipped == [] and second["org_b"].skipped == [
        ("note.txt", "not named *.json")
    ]


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        pause.wait(0.02)


# --- files and sessions that go away mid-pass ------------------------------------------------


def _take_then_fail(world: AckWorld, operation: str, name: str) -> None:
    """A concurrent pass moves ``name`` away just as ``operation`` fails on it."""

    def take(path: str) -> None:
        if path.endswith("/" + name):
            world.zone.put(
                "/zone/org_a/acks/processed", name, world.zone.take("/zone/org_a/acks", name)
            )
            raise ExportError(ErrorCode.IO, f"{name} is gone", transient=False)

    world.zone.on(operation, take)


def test_an_ack_that_disappears_while_being_read_was_taken_by_a_concurrent_pass(
    world: AckWorld,
) -> None:
    export_id = world.export()
    world.drop("a1.json", ack(export_id))
    _take_then_fail(world, "read_file", "a1.json")
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["vanished"]
    assert summary.failure is None and summary.deadline_checked
    assert world.status(export_id) is ExportStatus.SENT  # the other pass applies it


def test_a_refused_ack_that_disappears_before_its_move_writes_no_note(world: AckWorld) -> None:
    world.export()
    world.drop("bad.json", b"not json")
    _take_then_fail(world, "move_file", "bad.json")
    summary = world.folder_pass()
    assert [o.kind for o in summary.outcomes] == ["vanished"]
    assert world.names("error") == []


def test_a_broken_session_keeps_the_looks_at_unsettled_acks_it_did_not_reach() -> None:
    world = AckWorld(AckSettings(settle_seconds=30))
    world.export()
    world.drop("a1.json", b"{")
    world.drop("a2.json", b"[")
    first = world.folder_pass()
    assert [o.kind for o in first.outcomes] == ["waiting", "waiting"]
    world.zone.fail("read_file", ExportError(ErrorCode.CONNECTION, "reset"))
    broken = world.folder_pass(memory=first.memory)
    assert broken.failure_code == ErrorCode.CONNECTION
    assert broken.memory is not None and broken.memory.unsettled == first.memory.unsettled
    # Unchanged since the first look: both are judged now, without another wait.
    third = world.folder_pass(memory=broken.memory)
    assert [o.reject_code for o in third.outcomes] == ["MALFORMED", "MALFORMED"]


def test_a_shared_connector_drops_the_session_of_an_org_whose_pass_failed(
    world: AckWorld,
) -> None:
    world.export()
    world.zone.fail("list_entries", ExportError(ErrorCode.CONNECTION, "reset"))
    summaries = world.processor.process_all([config_of()], connector=world.zone)
    assert summaries[0].failure_code == ErrorCode.CONNECTION
    assert world.zone.discarded == ["local"]


def test_orgs_after_the_hard_end_of_the_pass_are_not_started() -> None:
    world = AckWorld(AckSettings(settle_seconds=0, pass_deadline_seconds=5))
    world.processor = AckProcessor(
        world.ledger,
        world.settings,
        clock=lambda: world.now,
        monotonic=lambda: world.elapsed,
        log=world.log,
    )
    first, second = world.export(org="org_a"), world.export(org="org_b")
    world.drop("a.json", ack(first), org="org_a")
    world.drop("b.json", ack(second), org="org_b")

    def slow_org_a(path: str) -> None:
        if path.startswith("/zone/org_a"):
            world.elapsed += 6

    world.zone.on("read_file", slow_org_a)
    by_org = _all(world, [config_of("org_a"), config_of("org_b")])
    assert by_org["org_b"].not_reached
    assert world.status(second) is ExportStatus.SENT
