"""Removing and restoring partitions by the retention rule, on the fake ledger and partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orderflow_exports.application.retention import remove_settled, restore
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports_tests.fakes.history import add_attempt
from orderflow_exports_tests.fakes.ledger import FakeLedger
from orderflow_exports_tests.fakes.partitions import FakeExportPartitions

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=30)
OLD = NOW - timedelta(days=45)


def test_only_settled_old_drafts_lose_their_partitions() -> None:
    ledger = FakeLedger()
    old_acked, young_acked = DraftRef("acme", "D-1"), DraftRef("acme", "D-2")
    failed, resent = DraftRef("acme", "D-3"), DraftRef("acme", "D-4")
    add_attempt(ledger, old_acked, 1, "ACKED", OLD)
    add_attempt(ledger, young_acked, 1, "ACKED", NOW - timedelta(days=2))
    add_attempt(ledger, failed, 1, ErrorCode.ERP_REJECTED, OLD)
    add_attempt(ledger, resent, 1, "ACKED", OLD)
    add_attempt(ledger, resent, 2, "PENDING", NOW)  # a forced re-send under way
    keys = {r.partition_key for r in (old_acked, young_acked, failed, resent)}
    partitions = FakeExportPartitions(*keys)
    assert remove_settled(ledger, partitions, NOW, MAX_AGE) == [old_acked.partition_key]
    assert partitions.keys == keys - {old_acked.partition_key}
    assert remove_settled(ledger, partitions, NOW, MAX_AGE) == []  # nothing left to remove


def test_pages_are_walked_to_the_end_and_unknown_partitions_are_left_alone() -> None:
    ledger = FakeLedger()
    refs = [DraftRef("acme", f"D-{i:03d}") for i in range(7)]
    for ref in refs:
        add_attempt(ledger, ref, 1, "ACKED", OLD)
    # D-000 was removed earlier (no partition now): not removed again, not an error.
    partitions = FakeExportPartitions(*(r.partition_key for r in refs[1:]))
    removed = remove_settled(ledger, partitions, NOW, MAX_AGE, page=3)
    assert removed == [r.partition_key for r in refs[1:]]
    assert partitions.removed == removed and partitions.keys == set()


def test_restore_adds_back_only_what_is_missing_once() -> None:
    partitions = FakeExportPartitions("acme:D-1")
    assert restore(partitions, ["acme:D-2", "acme:D-1", "acme:D-2"]) == ["acme:D-2"]
    assert partitions.added == ["acme:D-2"]
    assert restore(partitions, ["acme:D-2"]) == []
