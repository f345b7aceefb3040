"""The pure reconciliation rules (domain/reconciliation.py): thresholds, ownership, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orderflow_exports.domain.naming import DraftRef, export_filename, temp_filename
from orderflow_exports.domain.ports import FolderEntry
from orderflow_exports.domain.reconciliation import (
    ReconcileRules,
    classify_export_folder,
    classify_pending,
    classify_sent,
    export_id_of,
)
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RULES = ReconcileRules()
EXPORT_ID = "0b7a6d2e-1111-4222-8333-444455556666"


def record(
    status: ExportStatus, *, hours_ago: float, org: str = "acme", **extra: object
) -> ExportRecord:
    at = NOW - timedelta(hours=hours_ago)
    ref = DraftRef(org, "D-1")
    values: dict[str, object] = {
        "id": EXPORT_ID,
        "org_id": org,
        "draft_order_id": "D-1",
        "connector_type": "DROPZONE_JSON_V1",
        "attempt": 1,
        "status": status,
        "filename": export_filename(ref, at, EXPORT_ID),
        "dropzone_path": "/out/x",
        "storage_key": "k",
        "content_sha256": "0" * 64,
        "byte_size": 1,
        "line_count": 1,
        "forced": False,
        "erp_order_number": None,
        "error_code": None,
        "error_message": None,
        "dagster_run_id": "run-1",
        "created_at": at,
        "sent_at": at if status is not ExportStatus.PENDING else None,
        "acked_at": None,
        "updated_at": at,
    }
    values.update(extra)
    return ExportRecord(**values)  # type: ignore[arg-type]


def entry(name: str, hours_old: float, kind: str = "file") -> FolderEntry:
    return FolderEntry(name, kind, 1, (NOW - timedelta(hours=hours_old)).timestamp())  # type: ignore[arg-type]


def test_export_id_of_reads_our_names_only() -> None:
    name = export_filename(DraftRef("acme", "D-1"), NOW, EXPORT_ID)
    assert export_id_of(name) == EXPORT_ID
    assert export_id_of("orders.json") is None
    assert export_id_of("a_b_c_../x.json") is None
    assert export_id_of(name + ".bak") is None


def test_a_file_is_ours_only_for_the_org_and_exact_name_of_its_row() -> None:
    sent = record(ExportStatus.SENT, hours_ago=10)
    other_org = record(ExportStatus.SENT, hours_ago=10, org="globex")
    [mine] = classify_export_folder(
        "acme", [entry(sent.filename, 10)], {EXPORT_ID: sent}, NOW, RULES
    )
    assert (mine.kind, mine.draft_order_id) == ("stale_file", "D-1")
    [theirs] = classify_export_folder(
        "acme", [entry(sent.filename, 10)], {EXPORT_ID: other_org}, NOW, RULES
    )
    assert theirs.kind == "unknown_file"


def test_thresholds_keep_normal_traffic_out() -> None:
    fresh = record(ExportStatus.SENT, hours_ago=1)
    assert (
        classify_export_folder("acme", [entry(fresh.filename, 1)], {EXPORT_ID: fresh}, NOW, RULES)
        == []
    )
    young_temp = temp_filename(fresh.filename.replace("D-1", "D-2"))
    assert classify_export_folder("acme", [entry(young_temp, 0.5)], {}, NOW, RULES) == []
    assert (
        classify_pending(
            record(ExportStatus.PENDING, hours_ago=0.1), run_active=False, now=NOW, rules=RULES
        )
        is None
    )
    assert (
        classify_pending(
            record(ExportStatus.PENDING, hours_ago=5), run_active=True, now=NOW, rules=RULES
        )
        is None
    )


def test_a_failed_attempt_file_still_offered_says_remove_it_before_resending() -> None:
    failed = record(ExportStatus.FAILED, hours_ago=10, error_code="SUPERSEDED")
    [finding] = classify_export_folder(
        "acme", [entry(failed.filename, 10)], {EXPORT_ID: failed}, NOW, RULES
    )
    assert finding.kind == "stale_file" and "remove it before any re-send" in finding.next_step


def test_a_temp_file_of_a_pending_row_is_left_to_the_settle_rule() -> None:
    pending = record(ExportStatus.PENDING, hours_ago=5, rename_started_at=NOW)
    temp = temp_filename(pending.filename)
    assert classify_export_folder("acme", [entry(temp, 5)], {EXPORT_ID: pending}, NOW, RULES) == []


def test_sent_unanswered_needs_file_gone_and_no_ack_waiting() -> None:
    sent = record(ExportStatus.SENT, hours_ago=3)
    args = {"ack_deadline_seconds": 24 * 3600, "now": NOW, "rules": RULES}
    assert classify_sent(sent, file_present=True, acks_waiting=set(), **args) is None  # type: ignore[arg-type]
    assert classify_sent(sent, file_present=False, acks_waiting={EXPORT_ID}, **args) is None  # type: ignore[arg-type]
    finding = classify_sent(sent, file_present=False, acks_waiting=set(), **args)  # type: ignore[arg-type]
    assert finding is not None and finding.detail == "ACK_TIMEOUT in 21.0 h"


def test_names_from_the_dropzone_are_escaped() -> None:
    [finding] = classify_export_folder("acme", [entry("evil\x1b[2J.json", 1)], {}, NOW, RULES)
    assert "\x1b" not in finding.subject and finding.kind == "unknown_file"
