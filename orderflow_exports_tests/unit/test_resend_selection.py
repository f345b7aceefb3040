"""Which drafts a bulk re-send takes, on the in-memory ledger (the op only maps the result)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from orderflow_exports.application.retry import NEEDS_ACTION_CODES, select_resends
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig, NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.ledger import FakeLedger
from orderflow_exports_tests.fakes.sources import FakeConnectorConfigs

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _config(org: str, **overrides: object) -> ConnectorConfig:
    base = ConnectorConfig(org_id=org, transport="local", export_path=f"/o/{org}", ack_path="/a")
    return replace(base, **overrides)  # type: ignore[arg-type]


def _attempt(ledger: FakeLedger, ref: DraftRef, attempt: int, end: ErrorCode | str) -> None:
    export_id = str(uuid.uuid4())
    ledger.create_pending(
        NewExport(
            id=export_id,
            ref=ref,
            attempt=attempt,
            filename=f"{export_id}.json",
            dropzone_path=f"/o/{export_id}.json",
            storage_key=f"k/{export_id}",
            content_sha256="0" * 64,
            byte_size=1,
            line_count=1,
            forced=False,
            dagster_run_id="r",
            created_at=NOW,
        )
    )
    if end == "PENDING":
        return
    assert ledger.mark_sent(export_id, at=NOW)
    if end == "SENT":
        return
    if end == "ACKED":
        assert ledger.mark_acked(
            export_id, expected=ExportStatus.SENT, erp_order_number=None, at=NOW
        )
        return
    assert ledger.mark_failed(
        export_id, expected=ExportStatus.SENT, code=str(end), message="m", at=NOW
    )


def test_only_drafts_whose_latest_attempt_failed_with_the_codes_are_planned() -> None:
    ledger = FakeLedger()
    rejected, timed_out = DraftRef("acme", "D-1"), DraftRef("acme", "D-2")
    resent_since, acked, auth = (
        DraftRef("acme", "D-3"),
        DraftRef("acme", "D-4"),
        DraftRef("acme", "D-5"),
    )
    _attempt(ledger, rejected, 1, ErrorCode.ERP_REJECTED)
    _attempt(ledger, timed_out, 1, ErrorCode.ACK_TIMEOUT)
    _attempt(ledger, resent_since, 1, ErrorCode.ERP_REJECTED)
    _attempt(ledger, resent_since, 2, "SENT")  # a later attempt took over
    _attempt(ledger, acked, 1, "ACKED")
    _attempt(ledger, auth, 1, ErrorCode.AUTH)  # not a code asked for
    selection = select_resends(
        ledger,
        FakeConnectorConfigs(_config("acme")),
        error_codes=NEEDS_ACTION_CODES,
        org_id=None,
        limit=100,
        requested_by="test",
    )
    assert {p.ref for p in selection.plans} == {rejected, timed_out}
    assert selection.refused == {}
    [timeout_plan] = [p for p in selection.plans if p.ref == timed_out]
    assert timeout_plan.warning is not None and "may already hold" in timeout_plan.warning
    assert all(p.tags["orderflow/retried_by"] == "test" and not p.force for p in selection.plans)


def test_a_draft_that_may_not_be_resent_is_refused_alone_with_its_reason() -> None:
    ledger = FakeLedger()
    ok, disabled, unconfigured = (
        DraftRef("acme", "D-1"),
        DraftRef("off", "D-1"),
        DraftRef("gone", "D-1"),
    )
    for ref in (ok, disabled, unconfigured):
        _attempt(ledger, ref, 1, ErrorCode.ERP_REJECTED)
    configs = FakeConnectorConfigs(_config("acme"), _config("off", enabled=False))
    selection = select_resends(
        ledger, configs, error_codes=NEEDS_ACTION_CODES, org_id=None, limit=100, requested_by="t"
    )
    assert [p.ref for p in selection.plans] == [ok]
    assert set(selection.refused) == {"off:D-1", "gone:D-1"}
    assert "disabled" in selection.refused["off:D-1"]
    assert "no connector" in selection.refused["gone:D-1"]


def test_org_and_limit_bound_the_selection() -> None:
    ledger = FakeLedger()
    for i in range(5):
        _attempt(ledger, DraftRef("acme", f"D-{i}"), 1, ErrorCode.ERP_REJECTED)
    _attempt(ledger, DraftRef("globex", "G-1"), 1, ErrorCode.ERP_REJECTED)
    configs = FakeConnectorConfigs(_config("acme"), _config("globex"))
    selection = select_resends(
        ledger, configs, error_codes=NEEDS_ACTION_CODES, org_id="acme", limit=3, requested_by="t"
    )
    assert len(selection.plans) == 3 and all(p.ref.org_id == "acme" for p in selection.plans)
