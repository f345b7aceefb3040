"""Checking a run's drafts (``application/draft_checks``) on the fake draft source."""

from __future__ import annotations

from orderflow_exports.application.draft_checks import check_drafts
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports_tests.fakes.sources import APPROVED_AT, FakeDraftSource

GOOD = DraftRef("acme", "D-1")
EMPTY = DraftRef("acme", "D-2")
REJECTED = DraftRef("acme", "D-3")
MISSING = DraftRef("acme", "D-4")


def _source() -> FakeDraftSource:
    source = FakeDraftSource()
    source.add(GOOD, lines=2)
    source.add(EMPTY, lines=0)
    source.add(REJECTED, status="REJECTED")
    return source


def test_every_draft_is_checked_on_its_own_and_refusals_name_their_reason() -> None:
    source = _source()
    refs = {ref.partition_key: ref for ref in (GOOD, EMPTY, REJECTED, MISSING)}
    check = check_drafts(source, refs)
    assert check.accepted == {
        "acme:D-1": {
            "customer": "Müller & Söhne GmbH",
            "line_count": 2,
            "approved_at": APPROVED_AT.isoformat(),
        }
    }
    assert set(check.refused) == {"acme:D-2", "acme:D-3", "acme:D-4"}
    assert "REJECTED" in check.refused["acme:D-3"]
    assert source.reads == [GOOD, EMPTY, REJECTED, MISSING]
    assert [(ref, outcome) for ref, outcome, _ in check.refusal_reports()] == [
        (EMPTY, RequestOutcome.REFUSED),
        (REJECTED, RequestOutcome.REFUSED),
        (MISSING, RequestOutcome.REFUSED),
    ]
    assert check.refusal_text().startswith("refused: acme:D-2: ")


def test_a_run_of_exportable_drafts_reports_nothing() -> None:
    check = check_drafts(_source(), {GOOD.partition_key: GOOD})
    assert check.refused == {} and check.refusal_reports() == []
    assert list(check.accepted) == ["acme:D-1"]
