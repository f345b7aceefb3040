"""Totals, the failure message and the JSON of findings (application/reconciliation.py)."""

from __future__ import annotations

import json

from orderflow_exports.application.reconciliation import (
    OrgReconciliation,
    finding_json,
    finding_line,
    reconciliation_totals,
)
from orderflow_exports.domain.reconciliation import Finding

STALE = Finding(
    "stale_file",
    "acme",
    "acme_D-1.json",
    "ask the ERP",
    draft_order_id="D-1",
    export_id="e-1",
    age_seconds=7200.4,
)
TEMP_FIXED = Finding("temp_left", "acme", ".acme_D-2.json.tmp", "none", fixed="removed")
UNREACHABLE = Finding(
    "not_reconciled", "beta", "/out", "fix the connection", detail="CONNECTION: refused"
)


def test_totals_count_orgs_findings_fixes_and_per_org_classes() -> None:
    results = [
        OrgReconciliation("acme", findings=[STALE, TEMP_FIXED]),
        OrgReconciliation("beta", findings=[UNREACHABLE]),
        OrgReconciliation("gamma"),
    ]
    totals = reconciliation_totals(results)
    assert totals.orgs == 3 and totals.orgs_not_reconciled == 1
    assert totals.findings == (STALE, TEMP_FIXED, UNREACHABLE)
    assert totals.fixed == 1
    assert totals.per_org["acme"]["stale_file"] == 1
    assert totals.per_org["acme"]["temp_left"] == 1
    assert totals.per_org["beta"]["not_reconciled"] == 1
    assert sum(totals.per_org["gamma"].values()) == 0
    assert totals.incomplete_message == "reconciliation incomplete: org beta: 1 not_reconciled"


def test_every_org_checked_is_complete_even_with_findings() -> None:
    totals = reconciliation_totals([OrgReconciliation("acme", findings=[STALE])])
    assert totals.incomplete == () and totals.incomplete_message is None
    empty = reconciliation_totals([])
    assert empty.orgs == 0 and empty.findings == () and empty.incomplete_message is None


def test_finding_json_keeps_set_fields_and_rounds_the_age() -> None:
    assert finding_json(STALE) == {
        "class": "stale_file",
        "subject": "acme_D-1.json",
        "draft_order_id": "D-1",
        "export_id": "e-1",
        "age_seconds": 7200,
        "next_step": "ask the ERP",
    }
    assert finding_json(TEMP_FIXED)["fixed"] == "removed"
    assert "detail" not in finding_json(TEMP_FIXED)
    line = finding_line(UNREACHABLE)
    assert line.startswith("beta: not_reconciled: ")
    assert json.loads(line.split(": ", 2)[2])["detail"] == "CONNECTION: refused"
