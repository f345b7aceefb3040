"""What ack passes and the erp_ack check report (``application/acks/report``)."""

from __future__ import annotations

from datetime import UTC, datetime

from orderflow_exports.application.acks.report import (
    ack_check_verdict,
    ack_state,
    idle_text,
    incomplete_orgs,
    pass_totals,
    tick_problems,
    tick_text,
)
from orderflow_exports.application.acks.results import (
    AckOutcome,
    AckPassSummary,
    AckTimeout,
    OutcomeKind,
)
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.history import Ending, add_attempt
from orderflow_exports_tests.fakes.ledger import FakeLedger

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _outcome(kind: OutcomeKind, status: ExportStatus | None = None) -> AckOutcome:
    return AckOutcome("org_a", "a.json", kind, "r", status=status)


def _summaries() -> list[AckPassSummary]:
    busy = AckPassSummary(
        "org_a",
        outcomes=[
            _outcome("applied", ExportStatus.ACKED),
            _outcome("applied", ExportStatus.FAILED),
            _outcome("replayed", ExportStatus.ACKED),
            _outcome("rejected"),
        ],
        timeouts=[AckTimeout("org_a", "e", "d", AT, "late")],
        deferred=3,
    )
    broken = AckPassSummary("org_b", failure="cannot read", failure_code=ErrorCode.IO)
    unreached = AckPassSummary("org_c", not_reached=True)
    return [busy, broken, unreached]


def test_pass_totals_count_every_kind() -> None:
    totals = pass_totals(_summaries())
    assert totals.as_metadata() == {
        "orgs": 3,
        "applied": 2,
        "replayed": 1,
        "rejected": 1,
        "timed_out": 1,
        "deferred": 3,
    }
    assert totals.acked == 1


def test_a_job_fails_on_unread_orgs_while_a_tick_also_reports_unreached_and_refused() -> None:
    summaries = _summaries()
    assert [line.split(":")[0] for line in incomplete_orgs(summaries)] == ["org org_b"]
    assert [line.split(":")[0] for line in tick_problems(summaries)] == [
        "org org_a",
        "org org_b",
        "org org_c",
    ]


def test_tick_text_says_what_the_pass_did_and_stays_short() -> None:
    text = tick_text(_summaries(), ["p1"])
    assert text.startswith("applied 2 ack(s) (1 ACKED, 1 FAILED by the ERP), 1 replayed")
    assert "1 moved to error/, 1 ACK_TIMEOUT, 3 deferred to the next tick, in 3 org(s)" in text
    assert text.endswith("; problems: p1")
    assert len(tick_text(_summaries(), ["x" * 5000])) == 2000


def test_idle_text_names_why_nothing_changed() -> None:
    assert idle_text([], []) == "no enabled connector configs"
    assert idle_text([AckPassSummary("a")], ["org a: broken"]) == "no ack applied; org a: broken"
    assert "in 1 org(s)" in idle_text([AckPassSummary("a")], [])


def test_ack_state_of_each_status() -> None:
    assert ack_state(ExportStatus.ACKED) == "ACKED"
    assert ack_state(ExportStatus.FAILED) == "NEEDS_ACTION"
    assert ack_state(ExportStatus.SENT) == ack_state(ExportStatus.PENDING) == "WAITING_FOR_ACK"


def test_the_check_fails_on_a_failed_or_missing_export_and_passes_while_waiting() -> None:
    ledger = FakeLedger()

    def latest(draft: str, ending: Ending) -> ExportRecord | None:
        ref = DraftRef("org_a", draft)
        add_attempt(ledger, ref, 1, ending, AT)
        return ledger.latest(ref)

    acked, waiting = latest("d1", "ACKED"), latest("d2", "SENT")
    failed = latest("d3", ErrorCode.ACK_TIMEOUT)
    fine = ack_check_verdict({"org_a:d1": acked, "org_a:d2": waiting})
    assert fine.passed and fine.counts() == {
        "needs_action": 0,
        "waiting_for_ack": 1,
        "acked": 1,
        "not_exported": 0,
    }
    assert fine.description() == "1 export(s) waiting for the ERP's ack (not a failure)"
    missing = ack_check_verdict({"org_a:d1": acked, "org_a:d9": None})
    assert not missing.passed and missing.description() == "1 draft(s) not exported: org_a:d9"
    bad = ack_check_verdict({"org_a:d3": failed, "org_a:d9": None})
    assert not bad.passed and bad.description() == "NEEDS ACTION: 1 export(s) FAILED: org_a:d3"
    assert ack_check_verdict({"org_a:d1": acked}).description() == "acknowledged by the ERP"
