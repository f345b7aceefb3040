"""One approvals tick on in-memory ports: what is requested, recorded, logged and kept."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from orderflow_exports.application.approvals_tick import (
    ApprovalsTick,
    TickLimits,
    TickLine,
    run_approvals_tick,
)
from orderflow_exports.application.planning import PlannedRun
from orderflow_exports.domain.export_requests import MAX_REDRIVES, RequestOutcome, RequestReason
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import KnownPartitions
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.fakes.partitions import FakeKnownPartitions
from orderflow_exports_tests.fakes.requests import FakeExportRequests
from orderflow_exports_tests.fakes.sources import (
    APPROVED_AT,
    FakeConnectorConfigs,
    FakeDraftSource,
)

NOW = APPROVED_AT + timedelta(hours=1)
LIMITS = TickLimits(max_requests=100, page_size=2, max_scanned=100)
FIRST_READ = "[first read of the backlog]"


class Ports:
    """The tick's ports in memory, with the connector of org ``acme`` enabled."""

    def __init__(self) -> None:
        self.requests = FakeExportRequests()
        self.drafts = FakeDraftSource(self.requests)
        self.configs = FakeConnectorConfigs(
            ConnectorConfig(org_id="acme", transport="local", export_path="/o", ack_path="/a")
        )
        self.partitions = FakeKnownPartitions()

    def add(self, *draft_ids: str, org: str = "acme") -> list[DraftRef]:
        refs = [DraftRef(org, draft_id) for draft_id in draft_ids]
        for ref in refs:
            self.drafts.add(ref)
        return refs

    def tick(
        self,
        now: datetime = NOW,
        cursor: str | None = None,
        limits: TickLimits = LIMITS,
        known: Callable[[Sequence[str]], KnownPartitions] | None = None,
    ) -> ApprovalsTick:
        return run_approvals_tick(
            self.drafts,
            self.configs,
            self.requests,
            self.partitions.known if known is None else known,
            cursor=cursor,
            now=now,
            limits=limits,
        )


def _texts(tick: ApprovalsTick, level: str = "info") -> list[str]:
    return [line.text for line in tick.lines if line.level == level]


def _suffix(now: datetime) -> str:
    return f"@{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


def test_new_drafts_are_recorded_and_become_new_partitions_in_one_run() -> None:
    ports = Ports()
    refs = ports.add("D-1", "D-2", "D-3")
    tick = ports.tick()
    keys = ["acme:D-1", "acme:D-2", "acme:D-3"]
    assert tick.runs == [PlannedRun(keys, "local", "")]
    assert tick.new_partition_keys == keys
    assert tick.skip is None
    assert tick.summary == (
        f"requested 3 (new 3, re-driven 0, changed 0); 1 run(s), 3 new partition(s) {FIRST_READ}"
    )
    assert tick.lines == [TickLine("info", tick.summary)]
    assert ports.partitions.asked == [keys]
    for ref in refs:
        record = ports.requests.get(ref)
        assert record is not None and record.request_count == 1 and record.redrive_count == 0
    assert tick.next_cursor is not None
    cursor = json.loads(tick.next_cursor)
    assert cursor["tick"] == tick.summary  # first: the tick list shows the cursor's start
    assert datetime.fromisoformat(cursor["since"]) == NOW and cursor["orgs"] == ["acme"]


def test_the_known_partitions_are_read_before_any_request_is_recorded() -> None:
    ports = Ports()
    [ref] = ports.add("D-1")
    seen: list[object] = []

    def known(keys: Sequence[str]) -> KnownPartitions:
        seen.append(ports.requests.get(ref))
        return ports.partitions.known(keys)

    tick = ports.tick(known=known)
    assert seen == [None]
    assert tick.runs and ports.requests.get(ref) is not None


def test_a_transient_failure_is_redriven_once_due_over_its_known_partition() -> None:
    ports = Ports()
    [ref] = ports.add("D-1")
    first = ports.tick()
    ports.partitions.keys.extend(first.new_partition_keys)  # what the daemon does
    ports.requests.record_outcome(
        ref, RequestOutcome.TRANSIENT, "connection refused", at=NOW + timedelta(seconds=10)
    )
    assert ports.tick(NOW + timedelta(seconds=30), first.next_cursor).skip is not None  # backoff
    later = NOW + timedelta(minutes=2)
    tick = ports.tick(later, first.next_cursor)
    assert tick.runs == [PlannedRun(["acme:D-1"], "local", _suffix(later))]
    assert tick.new_partition_keys == []
    assert _texts(tick)[0] == (
        "acme:D-1: requested again (redrive, re-drive 1); last outcome TRANSIENT: "
        "connection refused"
    )
    assert tick.summary.startswith("requested 1 (new 0, re-driven 1, changed 0); 1 run(s), 0 new")
    assert "[changes since " in tick.summary
    record = ports.requests.get(ref)
    assert record is not None and record.redrive_count == 1 and record.last_outcome is None


def test_a_draft_whose_redrives_are_used_up_needs_a_person_and_is_not_requested() -> None:
    ports = Ports()
    [ref] = ports.add("D-1")
    at, cursor = NOW, None
    for redrive in range(MAX_REDRIVES + 1):  # the first request, then every re-drive
        tick = ports.tick(at, cursor)
        assert tick.runs, (redrive, tick.skip)
        ports.partitions.keys = ["acme:D-1"]
        # No run ever reports: each request falls due an hour later.
        at, cursor = at + timedelta(hours=1, minutes=1), tick.next_cursor
    tick = ports.tick(at, cursor)
    assert tick.runs == [] and tick.new_partition_keys == []
    assert _texts(tick, "warning") == [
        f"acme:D-1: needs a person, no longer requested automatically: {MAX_REDRIVES} "
        "re-drives used up and no run reported"
    ]
    assert tick.skip is not None
    assert tick.skip.startswith(
        "1 draft(s) need a person: re-drives used up, no run reported (requested 0 (new 0, "
        "re-driven 0, changed 0); 1 need a person (re-drives used up) [changes since "
    )
    record = ports.requests.get(ref)
    assert record is not None and record.needs_person_since == at
    assert record.redrive_count == MAX_REDRIVES


def test_a_request_lost_to_a_concurrent_update_is_left_out_of_the_runs() -> None:
    ports = Ports()
    taken, kept = ports.add("D-1", "D-2")

    def known(keys: Sequence[str]) -> KnownPartitions:
        # Another tick records D-1 between this tick's read and its write.
        ports.requests.record_requests([(taken, None, RequestReason.NEW, APPROVED_AT)], at=NOW)
        return ports.partitions.known(keys)

    tick = ports.tick(known=known)
    assert tick.runs == [PlannedRun(["acme:D-2"], "local", "")]
    assert tick.new_partition_keys == ["acme:D-2"]
    assert tick.summary == (
        "requested 1 (new 1, re-driven 0, changed 0); 1 taken over by a concurrent update; "
        f"1 run(s), 1 new partition(s) {FIRST_READ}"
    )
    record = ports.requests.get(kept)
    assert record is not None and record.request_count == 1


def test_a_tick_whose_every_request_was_lost_asks_for_no_run() -> None:
    ports = Ports()
    [taken] = ports.add("D-1")

    def known(keys: Sequence[str]) -> KnownPartitions:
        ports.requests.record_requests([(taken, None, RequestReason.NEW, APPROVED_AT)], at=NOW)
        return ports.partitions.known(keys)

    tick = ports.tick(known=known)
    assert tick.runs == [] and tick.new_partition_keys == []
    assert tick.skip == (
        "every planned request was taken over by a concurrent update (requested 0 (new 0, "
        f"re-driven 0, changed 0); 1 taken over by a concurrent update {FIRST_READ})"
    )


def test_nothing_to_do_skips_without_asking_for_partitions() -> None:
    ports = Ports()
    tick = ports.tick()
    assert tick.skip == (
        f"no new approved drafts to export (requested 0 (new 0, re-driven 0, changed 0) "
        f"{FIRST_READ})"
    )
    assert tick.runs == [] and tick.lines == [] and ports.partitions.asked == []
    assert tick.next_cursor is not None  # everything was read: the next tick reads changes


def test_drafts_nobody_can_export_are_named_in_the_skip_and_the_log() -> None:
    ports = Ports()
    ports.add("N-1", org="nocfg")
    tick = ports.tick()
    assert tick.skip == (
        "no new approved drafts to export (requested 0 (new 0, re-driven 0, changed 0); "
        f"skipped 1 (no connector 1) {FIRST_READ}); "
        "skipped 1: nocfg:N-1: org nocfg has no enabled connector"
    )
    assert _texts(tick) == ["not exported: nocfg:N-1: org nocfg has no enabled connector"]


def test_lines_past_the_log_limit_are_counted_in_one_line() -> None:
    ports = Ports()
    ports.add("N-1", "N-2", "N-3", org="nocfg")
    refs = ports.add("D-1", "D-2", "D-3")
    limits = TickLimits(max_requests=100, page_size=2, max_scanned=100, logged_lines=2)
    first = ports.tick(limits=limits)
    ports.partitions.keys.extend(first.new_partition_keys)
    assert _texts(first)[:3] == [
        "not exported: nocfg:N-1: org nocfg has no enabled connector",
        "not exported: nocfg:N-2: org nocfg has no enabled connector",
        "not exported: 1 more drafts",
    ]
    for ref in refs:
        ports.requests.record_outcome(ref, RequestOutcome.TRANSIENT, "timeout", at=NOW)
    tick = ports.tick(NOW + timedelta(minutes=2), first.next_cursor, limits)
    again = [t for t in _texts(tick) if "requested again" in t]
    assert again == [
        "acme:D-1: requested again (redrive, re-drive 1); last outcome TRANSIENT: timeout",
        "acme:D-2: requested again (redrive, re-drive 1); last outcome TRANSIENT: timeout",
        "requested again: 1 more drafts",
    ]
    [run] = tick.runs
    assert run.keys == ["acme:D-1", "acme:D-2", "acme:D-3"]  # neighbours: one range


def test_a_capped_tick_reads_the_same_window_again() -> None:
    ports = Ports()
    ports.add("D-1", "D-2", "D-3")
    capped = TickLimits(max_requests=2, page_size=2, max_scanned=100)
    tick = ports.tick(limits=capped)
    assert tick.new_partition_keys == ["acme:D-1", "acme:D-2"]
    assert "cap reached: more next tick" in tick.summary
    assert tick.next_cursor is None  # no window yet: the next tick reads the backlog again
    ports.partitions.keys.extend(tick.new_partition_keys)
    rest = ports.tick(NOW + timedelta(seconds=30), limits=capped)
    assert rest.new_partition_keys == ["acme:D-3"] and rest.next_cursor is not None
