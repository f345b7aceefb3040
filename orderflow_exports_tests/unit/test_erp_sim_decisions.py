"""The simulated ERP's pure part: verdicts by seed and ratio, and contract-conformant acks."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from orderflow_exports.domain.ack_files import parse_ack
from orderflow_exports.erp_sim.decisions import (
    Policy,
    Verdict,
    ack_document,
    ack_name,
    decide,
    invalid_order,
)
from orderflow_exports.erp_sim.validation import check_order
from orderflow_exports_tests.support.documents import SNAPSHOT_DRAFT, SNAPSHOT_EXPORT_ID, render

RECEIVED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_same_seed_and_export_id_give_the_same_verdict() -> None:
    policy = Policy(reject_ratio=0.3, silent_ratio=0.3, seed=7)
    ids = [str(uuid.UUID(int=n)) for n in range(200)]
    first = [decide(policy, i) for i in ids]
    assert first == [decide(policy, i) for i in ids]
    other_seed = [decide(Policy(reject_ratio=0.3, silent_ratio=0.3, seed=8), i) for i in ids]
    assert [d.verdict for d in first] != [d.verdict for d in other_seed]


def test_ratios_are_honoured() -> None:
    policy = Policy(reject_ratio=0.2, silent_ratio=0.1, seed=1)
    verdicts = [decide(policy, str(uuid.UUID(int=n))).verdict for n in range(5000)]
    assert 0.17 < verdicts.count(Verdict.REJECT) / 5000 < 0.23
    assert 0.08 < verdicts.count(Verdict.SILENT) / 5000 < 0.12
    assert all(v is not Verdict.ACCEPT for v in [decide(Policy(reject_ratio=1.0), "x").verdict])
    assert decide(Policy(), "x").verdict is Verdict.ACCEPT


def test_named_drafts_are_always_rejected() -> None:
    policy = Policy(reject_drafts=frozenset({"D-1003"}))
    assert decide(policy, SNAPSHOT_EXPORT_ID, "D-1003").verdict is Verdict.REJECT
    assert decide(policy, SNAPSHOT_EXPORT_ID, "D-1001").verdict is Verdict.ACCEPT


@pytest.mark.parametrize(
    "values",
    [
        {"reject_ratio": -0.1},
        {"silent_ratio": 1.5},
        {"reject_ratio": 0.6, "silent_ratio": 0.6},
        {"delay_seconds": -1},
    ],
)
def test_bad_policies_are_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**values)  # type: ignore[arg-type]


def test_accept_ack_is_what_the_ack_pass_parses() -> None:
    decision = decide(Policy(), SNAPSHOT_EXPORT_ID)
    data = ack_document(decision, "acme", RECEIVED)
    ack = parse_ack(data)
    assert ack.export_id == SNAPSHOT_EXPORT_ID
    assert ack.status == "ACKED"
    assert ack.erp_order_number == decision.erp_order_number
    assert decision.erp_order_number and decision.erp_order_number.startswith("SO-")
    assert ack.received_at == RECEIVED
    assert json.loads(data)["org_id"] == "acme"
    assert ack_name(SNAPSHOT_EXPORT_ID).endswith(".json")
    assert not ack_name(SNAPSHOT_EXPORT_ID).startswith(".")


def test_reject_ack_carries_the_reason() -> None:
    decision = decide(Policy(reject_ratio=1.0), SNAPSHOT_EXPORT_ID)
    ack = parse_ack(ack_document(decision, "acme", RECEIVED))
    assert ack.status == "FAILED"
    assert ack.erp_order_number is None
    assert ack.message and "refused" in ack.message
    assert "blocked" in ack.errors[0].message
    assert [e.code for e in ack.errors] == ["CUSTOMER_BLOCKED"]


def test_silent_has_no_ack() -> None:
    decision = decide(Policy(silent_ratio=1.0), SNAPSHOT_EXPORT_ID)
    assert decision.verdict is Verdict.SILENT
    with pytest.raises(ValueError):
        ack_document(decision, "acme", RECEIVED)


def test_a_real_document_passes_the_published_schema() -> None:
    data, _ = render(SNAPSHOT_DRAFT)
    checked = check_order(data)
    assert checked.problems == []
    assert (checked.export_id, checked.org_id, checked.draft_order_id) == (
        SNAPSHOT_EXPORT_ID,
        "acme",
        "D-1003",
    )


def test_a_broken_document_is_rejected_with_schema_errors_and_line_numbers() -> None:
    data, _ = render(SNAPSHOT_DRAFT)
    document = json.loads(data)
    document["lines"][2]["quantity"] = 3.5  # a float, where the schema wants a decimal string
    del document["totals"]
    checked = check_order(json.dumps(document).encode())
    assert checked.export_id == SNAPSHOT_EXPORT_ID
    assert len(checked.problems) >= 2
    assert any(line_no == 3 for _, line_no in checked.problems)
    ack = parse_ack(
        ack_document(invalid_order(SNAPSHOT_EXPORT_ID, checked.problems), "acme", RECEIVED)
    )
    assert ack.status == "FAILED"
    assert {e.code for e in ack.errors} == {"SCHEMA"}
    assert any(e.line_no == 3 for e in ack.errors)


def test_not_json_has_no_export_id() -> None:
    checked = check_order(b"\xff not json")
    assert checked.export_id is None and checked.problems
    assert check_order(b"[1, 2]").export_id is None
