"""The ack parser and the transition decisions (CONTRACT §5, §6)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orderflow_exports.application.acks.memory import (
    MAX_REMEMBERED_PER_ORG,
    AckPassMemory,
    OrgMemory,
)
from orderflow_exports.domain.ack_decisions import (
    ACK_TIMEOUT,
    ACKABLE,
    ERP_REJECTED,
    MAX_ERROR_MESSAGE_CHARS,
    AlreadyApplied,
    ApplyAck,
    RejectAck,
    ack_deadline_cutoff,
    ack_timeout_message,
    decide,
    is_ack_overdue,
    rejection_summary,
)
from orderflow_exports.domain.ack_files import (
    DEFAULT_MAX_ACK_BYTES,
    MAX_NOTE_EXCERPT_CHARS,
    Ack,
    AckRejected,
    excerpt,
    is_ack_name,
    is_settled,
    parse_ack,
)
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

EXPORT_ID = "0b3f2e0c-1111-4222-8333-444455556666"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def ack_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "export_id": EXPORT_ID,
        "status": "ACKED",
        "erp_order_number": "SO-1234",
        "message": None,
        "errors": [],
        "received_at": "2026-11-26T10:00:00Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def ack_bytes(**overrides: Any) -> bytes:
    return json.dumps(ack_dict(**overrides)).encode("utf-8")


def record(
    status: ExportStatus = ExportStatus.SENT,
    *,
    org_id: str = "org-a",
    erp_order_number: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    sent_at: datetime | None = NOW - timedelta(hours=1),
) -> ExportRecord:
    return ExportRecord(
        id=EXPORT_ID,
        org_id=org_id,
        draft_order_id="D-1",
        connector_type="DROPZONE_JSON_V1",
        attempt=1,
        status=status,
        filename="f.json",
        dropzone_path="/out/f.json",
        storage_key="k",
        content_sha256="0" * 64,
        byte_size=10,
        line_count=1,
        forced=False,
        erp_order_number=erp_order_number,
        error_code=error_code,
        error_message=error_message,
        dagster_run_id=None,
        created_at=NOW - timedelta(hours=2),
        sent_at=sent_at,
        acked_at=None,
        updated_at=NOW - timedelta(hours=1),
    )


# --- parser: accepted files --------------------------------------------------------------------


def test_acked_ack_parses() -> None:
    ack = parse_ack(ack_bytes())
    assert ack.export_id == EXPORT_ID
    assert ack.status == "ACKED"
    assert ack.erp_order_number == "SO-1234"
    assert ack.errors == ()
    assert ack.received_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert ack.org_id is None


def test_failed_ack_with_errors_parses() -> None:
    data = ack_bytes(
        status="FAILED",
        erp_order_number=None,
        message="customer blocked",
        errors=[
            {"code": "ITEM_UNKNOWN", "message": "no item X-9", "line_no": 3},
            {"code": "CREDIT", "message": "credit limit", "line_no": None},
        ],
    )
    ack = parse_ack(data)
    assert ack.status == "FAILED"
    assert ack.message == "customer blocked"
    assert [(e.code, e.line_no) for e in ack.errors] == [("ITEM_UNKNOWN", 3), ("CREDIT", None)]


def test_optional_fields_may_be_absent() -> None:
    ack = parse_ack(
        json.dumps(
            {"export_id": EXPORT_ID, "status": "ACKED", "received_at": "2026-11-26T10:00:00Z"}
        ).encode()
    )
    assert (ack.erp_order_number, ack.message, ack.errors) == (None, None, ())


def test_utf8_bom_is_accepted() -> None:
    # Decided: Windows ERPs write a BOM by default; it carries no meaning (RFC 8259 §8.1).
    assert parse_ack(b"\xef\xbb\xbf" + ack_bytes()) == parse_ack(ack_bytes())


def test_org_id_is_allowed_and_kept() -> None:
    assert parse_ack(ack_bytes(org_id="org-a")).org_id == "org-a"


def test_upper_case_uuid_is_normalised_to_lower_case() -> None:
    assert parse_ack(ack_bytes(export_id=EXPORT_ID.upper())).export_id == EXPORT_ID


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26t10:00:00z", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26T11:00:00+01:00", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26T10:00:00.123456789Z", datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_received_at_accepts_rfc3339(stamp: str, expected: datetime) -> None:
    assert parse_ack(ack_bytes(received_at=stamp)).received_at == expected


# --- parser: refused files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (ack_bytes(status="OK"), "unknown status 'OK'"),
        (ack_bytes(status="acked"), "unknown status 'acked'"),
        (ack_bytes(export_id=_DROP), "export_id is missing"),
        (ack_bytes(status=_DROP), "status is missing"),
        (ack_bytes(received_at=_DROP), "received_at is missing"),
        (ack_bytes(export_id="not-a-uuid"), "'not-a-uuid' is not a UUID"),
        (ack_bytes(export_id="{" + EXPORT_ID + "}"), "is not a UUID"),
        (ack_bytes(export_id=42), "export_id: Input should be a valid string (got a number)"),
        (ack_bytes(erp_order_number=1234), "erp_order_number: Input should be a valid string"),
        (ack_bytes(erp_order_number=""), "erp_order_number"),
        (ack_bytes(message=["x"]), "message: Input should be a valid string (got an array)"),
        (ack_bytes(errors="boom"), "errors must be an array"),
        (ack_bytes(errors=["boom"]), "errors.0 must be an object"),
        (ack_bytes(errors=[{"code": "X"}]), "errors.0.message is missing"),
        (ack_bytes(errors=[{"code": "X", "message": "m", "line_no": "3"}]), "errors.0.line_no"),
        (ack_bytes(errors=[{"code": "X", "message": "m", "line_no": 0}]), "errors.0.line_no"),
        (ack_bytes(errors=[{"code": "X", "message": "m", "x": 1}]), "errors.0.x is not an ack"),
        (ack_bytes(received_at="2026-11-26 10:00:00"), "is not an RFC 3339 timestamp"),
        (ack_bytes(received_at="2026-11-26T10:00:00"), "with a time zone"),
        (ack_bytes(received_at="26.11.2026"), "is not an RFC 3339 timestamp"),
        (ack_bytes(received_at="2026-02-30T10:00:00Z"), "is not a valid date and time"),
        (ack_bytes(received_at=1764151200), "received_at: Input should be a valid datetime"),
        (ack_bytes(org_id="a/b"), "org_id"),
        (ack_bytes(org_id=7), "org_id"),
        (ack_bytes(surprise=True), "surprise is not an ack field"),
        (ack_bytes(status=True), "status"),
        (b'{"export_id": "x", ', "not valid JSON"),
        (b"", "ack file is empty"),
        (b" \n", "ack file is empty"),
        (b"[]", "must hold one JSON object, not an array"),
        (b'"ACKED"', "must hold one JSON object, not the string 'ACKED'"),
        (b"null", "must hold one JSON object, not null"),
        (b'{"status": "ACKED", "status": "FAILED"}', "has the key 'status' more than once"),
        (b'{"x": NaN}', "NaN is not a JSON number"),
        (b'{"x": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
        (b"[" * 200_000, "not acceptable JSON"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
        (b'{"message": "caf\xe9"}', "not valid UTF-8: byte 16"),
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", "not valid JSON"),
    ],
)
def test_refused_with_a_clear_reason(data: bytes, words: str) -> None:
    with pytest.raises(AckRejected) as caught:
        parse_ack(data)
    assert words in caught.value.reason
    assert isinstance(caught.value, OrderflowError)


def test_every_problem_is_listed() -> None:
    with pytest.raises(AckRejected) as caught:
        parse_ack(b'{"status": "OK", "errors": 3}')
    reason = caught.value.reason
    assert reason.startswith("ack is invalid (4 problems)")
    for words in ("export_id is missing", "unknown status 'OK'", "errors must be an array"):
        assert words in reason


def test_ten_megabyte_file_is_refused_before_parsing() -> None:
    padding = "x" * (10 * 1024 * 1024)
    data = ack_bytes(message=padding)
    with pytest.raises(AckRejected, match=r"too large: \d{8} bytes, at most 1048576 allowed"):
        parse_ack(data)
    assert len(data) > DEFAULT_MAX_ACK_BYTES


def test_max_bytes_is_configurable() -> None:
    data = ack_bytes()
    assert parse_ack(data, max_bytes=len(data)).export_id == EXPORT_ID
    with pytest.raises(AckRejected, match="too large"):
        parse_ack(data, max_bytes=len(data) - 1)


# --- decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [ExportStatus.PENDING, ExportStatus.SENT])
def test_acked_applies_to_pending_and_sent(status: ExportStatus) -> None:
    decision = decide(record(status), parse_ack(ack_bytes()), "org-a")
    assert decision == ApplyAck(EXPORT_ID, ExportStatus.ACKED, ACKABLE, erp_order_number="SO-1234")
    assert decision.expected == (ExportStatus.PENDING, ExportStatus.SENT)


def test_failed_applies_erp_rejected_with_message_and_errors() -> None:
    ack = parse_ack(
        ack_bytes(
            status="FAILED",
            erp_order_number=None,
            message="customer blocked",
            errors=[
                {"code": "ITEM_UNKNOWN", "message": "no item X-9", "line_no": 3},
                {"code": "CREDIT", "message": "credit limit exceeded"},
            ],
        )
    )
    decision = decide(record(ExportStatus.SENT), ack, "org-a")
    assert isinstance(decision, ApplyAck)
    assert decision.new_status is ExportStatus.FAILED
    assert decision.error_code == ERP_REJECTED
    assert decision.expected == ACKABLE
    assert decision.error_message == (
        "ERP rejected the order: customer blocked\n"
        "[ITEM_UNKNOWN] (line 3) no item X-9\n"
        "[CREDIT] credit limit exceeded"
    )


def test_unknown_export_is_rejected() -> None:
    decision = decide(None, parse_ack(ack_bytes()), "org-a")
    assert isinstance(decision, RejectAck)
    assert decision.code == RejectAck.UNKNOWN_EXPORT
    assert f"unknown export {EXPORT_ID}" in decision.reason


def test_another_orgs_export_is_rejected_without_naming_the_other_org() -> None:
    decision = decide(record(org_id="org-b"), parse_ack(ack_bytes()), "org-a")
    assert isinstance(decision, RejectAck)
    assert decision.code == RejectAck.OTHER_ORG
    # The reason lands in org A's folder: it must read exactly like an unknown export.
    assert decision.reason == decide(None, parse_ack(ack_bytes()), "org-a").reason
    assert "org-b" not in decision.reason
    assert decision.log_detail is not None and "org-b" in decision.log_detail


def test_org_id_field_must_match_the_folder() -> None:
    decision = decide(record(), parse_ack(ack_bytes(org_id="org-b")), "org-a")
    assert isinstance(decision, RejectAck)
    assert decision.code == RejectAck.ORG_MISMATCH
    # Checked before the row is read: even an unknown export gets this, clearer, reason.
    assert decide(None, parse_ack(ack_bytes(org_id="org-b")), "org-a") == decision


def test_org_id_field_matching_the_folder_applies() -> None:
    decision = decide(record(), parse_ack(ack_bytes(org_id="org-a")), "org-a")
    assert isinstance(decision, ApplyAck)


def test_duplicate_acked_is_a_replay() -> None:
    row = record(ExportStatus.ACKED, erp_order_number="SO-1234")
    decision = decide(row, parse_ack(ack_bytes()), "org-a")
    assert isinstance(decision, AlreadyApplied)
    assert decision.status is ExportStatus.ACKED


def test_duplicate_acked_without_order_number_is_a_replay() -> None:
    row = record(ExportStatus.ACKED, erp_order_number=None)
    decision = decide(row, parse_ack(ack_bytes(erp_order_number=None)), "org-a")
    assert isinstance(decision, AlreadyApplied)


def test_second_acked_with_another_order_number_contradicts() -> None:
    row = record(ExportStatus.ACKED, erp_order_number="SO-1234")
    decision = decide(row, parse_ack(ack_bytes(erp_order_number="SO-9999")), "org-a")
    assert isinstance(decision, RejectAck)
    assert decision.code == RejectAck.CONFLICT
    assert "'SO-9999'" in decision.reason and "'SO-1234'" in decision.reason


def test_failed_after_acked_contradicts() -> None:
    row = record(ExportStatus.ACKED, erp_order_number="SO-1234")
    decision = decide(row, parse_ack(ack_bytes(status="FAILED", message="no")), "org-a")
    assert isinstance(decision, RejectAck)
    assert decision.code == RejectAck.CONFLICT
    assert "already ACKED" in decision.reason


def test_replayed_rejection_is_a_replay() -> None:
    ack = parse_ack(ack_bytes(status="FAILED", message="no", erp_order_number=None))
    row = record(ExportStatus.FAILED, error_code=ERP_REJECTED, error_message=rejection_summary(ack))
    assert isinstance(decide(row, ack, "org-a"), AlreadyApplied)


def test_second_rejection_with_other_errors_contradicts() -> None:
    first = parse_ack(ack_bytes(status="FAILED", message="no"))
    second = parse_ack(ack_bytes(status="FAILED", message="still no, other reason"))
    row = record(
        ExportStatus.FAILED, error_code=ERP_REJECTED, error_message=rejection_summary(first)
    )
    decision = decide(row, second, "org-a")
    assert isinstance(decision, RejectAck) and decision.code == RejectAck.CONFLICT


def test_acked_after_failed_contradicts() -> None:
    row = record(ExportStatus.FAILED, error_code=ERP_REJECTED, error_message="x")
    decision = decide(row, parse_ack(ack_bytes()), "org-a")
    assert isinstance(decision, RejectAck) and decision.code == RejectAck.CONFLICT


def test_late_acked_after_timeout_is_parked_for_a_person() -> None:
    row = record(ExportStatus.FAILED, error_code=ACK_TIMEOUT, error_message="no ack")
    decision = decide(row, parse_ack(ack_bytes()), "org-a")
    assert isinstance(decision, RejectAck)
    assert decision.code == RejectAck.CONFLICT
    assert "ACK_TIMEOUT" in decision.reason and "SO-1234" in decision.reason
    assert "duplicate" in decision.reason


@pytest.mark.parametrize("code", [ACK_TIMEOUT, "CONNECTION", "SUPERSEDED"])
def test_rejection_after_our_own_failure_changes_nothing(code: str) -> None:
    row = record(ExportStatus.FAILED, error_code=code, error_message="ours")
    decision = decide(row, parse_ack(ack_bytes(status="FAILED")), "org-a")
    assert isinstance(decision, AlreadyApplied)
    assert code in decision.reason


def test_rejection_summary_is_bounded_and_safe() -> None:
    errors = [{"code": "E", "message": "bad\u0000line", "line_no": n} for n in range(1, 5001)]
    ack = parse_ack(ack_bytes(status="FAILED", message="m" * 10_000, errors=errors))
    text = rejection_summary(ack)
    assert len(text) <= MAX_ERROR_MESSAGE_CHARS
    assert text.endswith("...(truncated)")
    assert "\x00" not in text
    text.encode("utf-8")


def test_rejection_summary_counts_what_it_leaves_out() -> None:
    errors = [{"code": "E", "message": "x", "line_no": n} for n in range(1, 26)]
    text = rejection_summary(parse_ack(ack_bytes(status="FAILED", errors=errors)))
    assert "[E] (line 20) x" in text
    assert "(line 21)" not in text
    assert text.endswith("... and 5 more errors")


def test_escaped_lone_surrogates_never_reach_a_row() -> None:
    # Valid JSON, but the text cannot be UTF-8 encoded: constrained fields refuse it, free text
    # is cleaned before it is stored.
    with pytest.raises(AckRejected, match="erp_order_number"):
        parse_ack(
            b'{"export_id": "%s", "status": "ACKED", "erp_order_number": "SO-\\ud800",'
            b' "received_at": "2026-11-26T10:00:00Z"}' % EXPORT_ID.encode()
        )
    ack = parse_ack(ack_bytes(status="FAILED", message="bad \ud800 text"))
    assert rejection_summary(ack) == "ERP rejected the order: bad \ufffd text"


def test_rejection_summary_without_message() -> None:
    assert rejection_summary(parse_ack(ack_bytes(status="FAILED"))) == "ERP rejected the order"


# --- ack deadline ------------------------------------------------------------------------------

DAY = 24 * 3600


def test_sent_past_the_deadline_is_overdue() -> None:
    assert is_ack_overdue(record(sent_at=NOW - timedelta(hours=25)), NOW, DAY)


def test_sent_within_the_deadline_is_not_overdue() -> None:
    assert not is_ack_overdue(record(sent_at=NOW - timedelta(hours=23)), NOW, DAY)
    # Exactly at the cutoff is still in time: the rule is "older than".
    assert not is_ack_overdue(record(sent_at=NOW - timedelta(seconds=DAY)), NOW, DAY)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (ExportStatus.ACKED, None),
        (ExportStatus.FAILED, ERP_REJECTED),
        (ExportStatus.PENDING, None),
    ],
)
def test_only_sent_exports_can_time_out(status: ExportStatus, code: str | None) -> None:
    row = record(status, error_code=code, sent_at=NOW - timedelta(days=30))
    assert not is_ack_overdue(row, NOW, DAY)


def test_cutoff_and_message() -> None:
    assert ack_deadline_cutoff(NOW, DAY) == NOW - timedelta(days=1)
    row = record(sent_at=datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    message = ack_timeout_message(row, DAY)
    assert "24 h" in message and "2026-11-25T09:00:00+00:00" in message
    assert "90 min" in ack_timeout_message(row, 5400)


def test_cutoff_refuses_naive_time_and_bad_deadline() -> None:
    with pytest.raises(ValueError):
        ack_deadline_cutoff(NOW.replace(tzinfo=None), DAY)
    with pytest.raises(ValueError):
        ack_deadline_cutoff(NOW, 0)


# --- property: nothing but an Ack or AckRejected -----------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_field_values = {
    "export_id": st.sampled_from([EXPORT_ID, EXPORT_ID.upper(), "x", ""]) | _json_values,
    "status": st.sampled_from(["ACKED", "FAILED", "OK"]) | _json_values,
    "erp_order_number": st.none() | st.text(max_size=140) | _json_values,
    "message": st.none() | st.text() | _json_values,
    "errors": st.lists(
        st.fixed_dictionaries(
            {"code": st.text(max_size=5), "message": st.text(max_size=20)},
            optional={"line_no": st.none() | st.integers(), "extra": _json_values},
        )
        | _json_values,
        max_size=3,
    )
    | _json_values,
    "received_at": st.sampled_from(
        ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00+25:00", "2026-13-01T00:00:00Z", "now"]
    )
    | st.datetimes().map(lambda d: d.isoformat())
    | _json_values,
    "org_id": st.sampled_from(["org-a", "org-b", "a/b"]) | _json_values,
}
_near_acks = st.fixed_dictionaries({}, optional=_field_values)


def _check_any(data: bytes) -> None:
    try:
        ack = parse_ack(data, max_bytes=64 * 1024)
    except AckRejected as exc:
        assert exc.reason
        exc.reason.encode("utf-8")  # the reason is written beside the file
        return
    assert isinstance(ack, Ack)
    # Whatever parses must also be decidable against any row, and its texts storable.
    for row in (
        None,
        record(ExportStatus.SENT),
        record(ExportStatus.ACKED, erp_order_number="SO-1"),
        record(ExportStatus.FAILED, error_code=ACK_TIMEOUT, error_message="t"),
        record(org_id="org-b"),
    ):
        decision = decide(None if row is None else replace(row, id=ack.export_id), ack, "org-a")
        assert isinstance(decision, ApplyAck | AlreadyApplied | RejectAck)
        decision.reason.encode("utf-8")
        if isinstance(decision, ApplyAck) and decision.error_message is not None:
            decision.error_message.encode("utf-8")
            assert "\x00" not in decision.error_message


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
@example(b"\xef\xbb\xbf" + ack_bytes())
@example(b"[" * 100_000)
@example(b"\x00\x00\xfe\xff")
def test_any_bytes_give_an_ack_or_ack_rejected(data: bytes) -> None:
    _check_any(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_near_acks, st.booleans(), st.booleans())
def test_any_json_object_gives_an_ack_or_ack_rejected(
    fields: dict[str, Any], ascii_only: bool, bom: bool
) -> None:
    # ensure_ascii=True writes lone surrogates as \\ud800 escapes (valid JSON, unstorable text);
    # False with surrogatepass writes them raw (invalid UTF-8). Both must be handled.
    text = json.dumps(fields, ensure_ascii=ascii_only)
    data = text.encode("utf-8", errors="surrogatepass")
    _check_any((b"\xef\xbb\xbf" if bom else b"") + data)


# --- ack folders: names, excerpts, settling, connector rules -------------------------------------


@pytest.mark.parametrize(
    ("name", "is_ack"),
    [
        ("a.json", True),
        ("A.JSON", True),
        ("a.Json", True),
        ("SO-1.ack.json", True),
        ("ünïcödé.json", True),
        (".a.json", False),
        (".A.JSON", False),
        ("a.json.tmp", False),
        ("a.JSON.TMP", False),
        (".json", False),
        (".JSON", False),
        ("a.txt", False),
    ],
)
def test_ack_names_are_matched_without_regard_to_case(name: str, is_ack: bool) -> None:
    assert is_ack_name(name) is is_ack


@given(st.text(max_size=2000))
def test_excerpt_is_bounded_printable_ascii(text: str) -> None:
    shown = excerpt(text)
    assert len(shown) <= MAX_NOTE_EXCERPT_CHARS
    assert all(" " <= ch <= "~" for ch in shown)


def test_excerpt_escapes_control_characters_and_keeps_plain_text() -> None:
    assert excerpt("plain reason") == "plain reason"
    assert excerpt("a\nb\x1b[31mc\u202e") == "a\\nb\\x1b[31mc\\u202e"
    assert excerpt("x" * 500, 10) == "xxxxxxx..."


def test_settle_rule() -> None:
    now = 1_000_000.0
    fresh = {"now": now, "settle_seconds": 120.0}
    assert not is_settled(10, now - 5, previous_look=None, **fresh)
    assert is_settled(10, now - 121, previous_look=None, **fresh)
    # Unchanged since an earlier pass: finished, even when the server's clock runs ahead.
    assert is_settled(10, now + 3600, previous_look=(10, now + 3600), **fresh)
    assert not is_settled(11, now - 5, previous_look=(10, now - 5), **fresh)
    assert is_settled(10, now, previous_look=None, now=now, settle_seconds=0)


def test_pass_memory_round_trips_and_stays_bounded() -> None:
    org = OrgMemory(
        skipped=[f"{n:016x}" for n in range(MAX_REMEMBERED_PER_ORG + 50)],
        unsettled={f"{n:016x}": (n, 1.5) for n in range(MAX_REMEMBERED_PER_ORG + 50)},
        problem="abc",
    )
    data = json.loads(json.dumps(AckPassMemory({"acme": org}).to_json()))
    back = AckPassMemory.from_json(data).for_org("acme")
    assert len(back.skipped) == MAX_REMEMBERED_PER_ORG
    assert len(back.unsettled) == MAX_REMEMBERED_PER_ORG
    assert back.problem == "abc"
    assert AckPassMemory.from_json("garbage").orgs == {}
    assert AckPassMemory.from_json({"acme": {"u": {"k": "bad"}}}).for_org("acme").unsettled == {}
