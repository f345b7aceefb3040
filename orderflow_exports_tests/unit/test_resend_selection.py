"""Which drafts a bulk re-send takes, on the in-memory ledger (the op only maps the result)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from orderflow_exports.application.retry import NEEDS_ACTION_CODES, select_resends
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.fakes.history import add_attempt
from orderflow_exports_tests.fakes.ledger import FakeLedger
from orderflow_exports_tests.fakes.sources import FakeConnectorConfigs

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _config(org: str, **overrides: object) -> ConnectorConfig:
    base = ConnectorConfig(org_id=org, transport="local", export_path=f"/o/{org}", ack_path="/a")
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_only_drafts_whose_latest_attempt_failed_with_the_codes_are_planned() -> None:
    ledger = FakeLedger()
    rejected, timed_out = DraftRef("acme", "D-1"), DraftRef("acme", "D-2")
    resent_since, acked, auth = (
        DraftRef("acme", "D-3"),
        DraftRef("acme", "D-4"),
        DraftRef("acme", "D-5"),
    )
    add_attempt(ledger, rejected, 1, ErrorCode.ERP_REJECTED, NOW)
    add_attempt(ledger, timed_out, 1, ErrorCode.ACK_TIMEOUT, NOW)
    add_attempt(ledger, resent_since, 1, ErrorCode.ERP_REJECTED, NOW)
    add_attempt(ledger, resent_since, 2, "SENT", NOW)  # a later attempt took over
    add_attempt(ledger, acked, 1, "ACKED", NOW)
    add_attempt(ledger, auth, 1, ErrorCode.AUTH, NOW)  # not a code asked for
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
        add_attempt(ledger, ref, 1, ErrorCode.ERP_REJECTED, NOW)
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
        add_attempt(ledger, DraftRef("acme", f"D-{i}"), 1, ErrorCode.ERP_REJECTED, NOW)
    add_attempt(ledger, DraftRef("globex", "G-1"), 1, ErrorCode.ERP_REJECTED, NOW)
    configs = FakeConnectorConfigs(_config("acme"), _config("globex"))
    selection = select_resends(
        ledger, configs, error_codes=NEEDS_ACTION_CODES, org_id="acme", limit=3, requested_by="t"
    )
    assert len(selection.plans) == 3 and all(p.ref.org_id == "acme" for p in selection.plans)
