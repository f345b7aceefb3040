"""Raw column values → DraftOrder / DraftLine, as SQLite and PostgreSQL deliver them.

Every bad value refuses its draft with a DraftRefused naming the draft, the line, the field and
the value; good values give the same records (and the same document bytes) in either shape.
"""

from __future__ import annotations

import io
import json
import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from orderflow_exports.demo import draft_row, line_rows
from orderflow_exports.domain.document import (
    build_header,
    build_line,
    parse_document,
    write_document,
)
from orderflow_exports.domain.drafts import (
    LINE_FIELDS,
    DraftLine,
    DraftOrder,
    draft_from_values,
    line_from_values,
)
from orderflow_exports.domain.errors import DraftRefused, OrderflowError
from orderflow_exports_tests.support.documents import (
    SNAPSHOT_CREATED_AT,
    SNAPSHOT_DRAFT,
    SNAPSHOT_EXPORT_ID,
    sample_order,
)

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "export_json_v1.snapshot.json"
DRAFT = "acme:D-1003"


def postgres_header() -> dict[str, Any]:
    """A draft_order row as psycopg delivers it: date, datetime, str; ship_to as JSON text."""
    row = draft_row(SNAPSHOT_DRAFT)
    return {**row, "ship_to": json.dumps(row["ship_to"]), "line_count": SNAPSHOT_DRAFT.lines}


def sqlite_header() -> dict[str, Any]:
    """The same row as SQLite delivers it: every date, timestamp and JSON value as text."""
    row = postgres_header()
    for name in ("order_date", "requested_delivery_date"):
        row[name] = row[name].isoformat()
    for name in ("approved_at", "updated_at"):  # naive UTC, as SQLAlchemy stores it on SQLite
        row[name] = row[name].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return row


def postgres_lines() -> list[tuple[Any, ...]]:
    return [tuple(row[f] for f in LINE_FIELDS) for row in line_rows(SNAPSHOT_DRAFT)]


def sqlite_lines() -> list[tuple[Any, ...]]:
    lines = []
    for row in line_rows(SNAPSHOT_DRAFT):
        delivery = row["requested_delivery_date"]
        values = {
            **row,
            "quantity": str(row["quantity"]),
            "unit_price": str(row["unit_price"]),
            "requested_delivery_date": None if delivery is None else delivery.isoformat(),
        }
        lines.append(tuple(values[f] for f in LINE_FIELDS))
    return lines


def _render(order: DraftOrder, lines: list[DraftLine]) -> bytes:
    header = build_header(
        order, export_id=SNAPSHOT_EXPORT_ID, attempt=1, created_at=SNAPSHOT_CREATED_AT
    )
    out = io.BytesIO()
    write_document(out, header, lines)
    return out.getvalue()


@pytest.mark.parametrize(
    "header,lines", [(sqlite_header, sqlite_lines), (postgres_header, postgres_lines)]
)
def test_both_databases_shapes_give_the_records_and_the_golden_bytes(header, lines) -> None:  # type: ignore[no-untyped-def]
    expected_order, expected_lines = sample_order(SNAPSHOT_DRAFT)
    order = draft_from_values(header())
    parsed = [line_from_values(values, DRAFT) for values in lines()]
    assert order == expected_order
    assert parsed == expected_lines
    assert _render(order, parsed) == SNAPSHOT.read_bytes()


def test_ship_to_may_also_come_decoded() -> None:
    row = {**postgres_header(), "ship_to": draft_row(SNAPSHOT_DRAFT)["ship_to"]}
    assert draft_from_values(row) == sample_order(SNAPSHOT_DRAFT)[0]


def test_draft_refused_is_an_orderflow_error() -> None:
    # The export asset isolates OrderflowErrors per draft; anything else aborts the whole batch.
    assert issubclass(DraftRefused, OrderflowError)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("order_date", "garbage", "order_date 'garbage' is not a date (YYYY-MM-DD)"),
        ("order_date", "2026-13-01", "order_date '2026-13-01' is not a date (YYYY-MM-DD)"),
        ("order_date", "2026-W48-1", "order_date '2026-W48-1' is not a date (YYYY-MM-DD)"),
        ("order_date", "20261119", "order_date '20261119' is not a date (YYYY-MM-DD)"),
        ("order_date", 20261119, "order_date 20261119 is not a date (YYYY-MM-DD)"),
        ("order_date", None, "order_date is missing"),
        (
            "order_date",
            datetime(2026, 11, 19, 8, 0),
            "order_date 2026-11-19 08:00:00 is not a date (YYYY-MM-DD)",
        ),
        (
            "requested_delivery_date",
            "2026-02-30",
            "requested_delivery_date '2026-02-30' is not a date (YYYY-MM-DD)",
        ),
        ("ship_to", '"Main St 1"', "ship_to '\"Main St 1\"' is not a JSON object"),
        ("ship_to", "Main St 1", "ship_to 'Main St 1' is not JSON"),
        ("ship_to", "[1, 2]", "ship_to '[1, 2]' is not a JSON object"),
        ("ship_to", "null", "ship_to 'null' is not a JSON object"),
        ("ship_to", None, "ship_to is missing"),
        ("ship_to", 7, "ship_to 7 is not a JSON object"),
        (
            "ship_to",
            '{"name": "Lager", "street": "Hauptstr. 5"}',
            "ship_to {'name': 'Lager', 'street': 'Hauptstr. 5'} lacks postal_code, city, country",
        ),
        ("currency", "euro", "currency 'euro' is not a 3-letter ISO 4217 code (e.g. EUR)"),
        ("currency", "eur", "currency 'eur' is not a 3-letter ISO 4217 code (e.g. EUR)"),
        ("currency", "EU", "currency 'EU' is not a 3-letter ISO 4217 code (e.g. EUR)"),
        ("currency", None, "currency is missing"),
        (
            "approved_at",
            "yesterday",
            "approved_at 'yesterday' is not a timestamp (YYYY-MM-DD HH:MM:SS)",
        ),
        (
            "approved_at",
            "2026-11-20 25:00:00",
            "approved_at '2026-11-20 25:00:00' is not a timestamp (YYYY-MM-DD HH:MM:SS)",
        ),
        ("updated_at", None, "updated_at is missing"),
        ("customer_name", None, "customer_name is missing"),
        ("customer_name", 42, "customer_name 42 is not text (int)"),
        ("customer_po_number", 1001, "customer_po_number 1001 is not text (int)"),
        ("line_count", "3", "line_count '3' is not a count"),
    ],
)
@pytest.mark.parametrize("shape", [sqlite_header, postgres_header])
def test_a_bad_header_value_refuses_the_draft_naming_field_and_value(
    shape: Any, field: str, value: Any, message: str
) -> None:
    row = {**shape(), field: value}
    with pytest.raises(DraftRefused) as info:
        draft_from_values(row)
    assert str(info.value) == f"draft {DRAFT}: {message}"


def test_every_bad_header_value_is_named_at_once() -> None:
    row = {**sqlite_header(), "order_date": "garbage", "currency": "euro", "ship_to": '"x"'}
    with pytest.raises(DraftRefused) as info:
        draft_from_values(row)
    assert str(info.value) == (
        f"draft {DRAFT}: order_date 'garbage' is not a date (YYYY-MM-DD); "
        "currency 'euro' is not a 3-letter ISO 4217 code (e.g. EUR); "
        "ship_to '\"x\"' is not a JSON object"
    )


def test_long_values_are_cut_in_messages() -> None:
    row = {**sqlite_header(), "ship_to": "x" * 10_000}
    with pytest.raises(DraftRefused) as info:
        draft_from_values(row)
    assert len(str(info.value)) < 200 and str(info.value).endswith("... is not JSON")


_LINE_3 = dict(zip(LINE_FIELDS, sqlite_lines()[2], strict=True))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("quantity", "abc", "quantity 'abc' is not a finite decimal number"),
        ("quantity", "", "quantity '' is not a finite decimal number"),
        ("quantity", "NaN", "quantity 'NaN' is not a finite decimal number"),
        ("quantity", "Infinity", "quantity 'Infinity' is not a finite decimal number"),
        ("quantity", "-inf", "quantity '-inf' is not a finite decimal number"),
        ("quantity", "1_000", "quantity '1_000' is not a finite decimal number"),
        ("quantity", " 1.5", "quantity ' 1.5' is not a finite decimal number"),
        ("quantity", "1,5", "quantity '1,5' is not a finite decimal number"),
        ("quantity", Decimal("NaN"), "quantity NaN is not a finite decimal number"),
        ("quantity", Decimal("Infinity"), "quantity Infinity is not a finite decimal number"),
        ("quantity", float("nan"), "quantity nan is not a finite decimal number"),
        ("quantity", float("inf"), "quantity inf is not a finite decimal number"),
        ("quantity", None, "quantity is missing"),
        ("quantity", True, "quantity True is not a finite decimal number"),
        ("unit_price", "NaN", "unit_price 'NaN' is not a finite decimal number"),
        ("unit_price", Decimal("-Infinity"), "unit_price -Infinity is not a finite decimal number"),
        (
            "requested_delivery_date",
            "garbage",
            "requested_delivery_date 'garbage' is not a date (YYYY-MM-DD)",
        ),
        ("description", None, "description is missing"),
        ("uom", 5, "uom 5 is not text (int)"),
        ("erp_item_number", b"ITEM", "erp_item_number b'ITEM' is not text (bytes)"),
    ],
)
def test_a_bad_line_value_refuses_the_draft_naming_line_field_and_value(
    field: str, value: Any, message: str
) -> None:
    values = tuple({**_LINE_3, field: value}[f] for f in LINE_FIELDS)
    with pytest.raises(DraftRefused) as info:
        line_from_values(values, DRAFT)
    assert str(info.value) == f"draft {DRAFT}: line 3: {message}"


@pytest.mark.parametrize("line_no", ["x", 0, -1, None, 1.0])
def test_a_bad_line_number_is_named(line_no: Any) -> None:
    values = tuple({**_LINE_3, "line_no": line_no}[f] for f in LINE_FIELDS)
    with pytest.raises(DraftRefused, match=re.escape(f"draft {DRAFT}: a line: line_no ")):
        line_from_values(values, DRAFT)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("quantity", "1.00005", "quantity 1.00005 has more than 4 decimals"),
        ("quantity", 1.00005, "quantity 1.00005 has more than 4 decimals"),
        ("quantity", "1.2345678E+2", "quantity 123.45678 has more than 4 decimals"),
        ("unit_price", "10000.00001", "unit_price 10000.00001 has more than 4 decimals"),
        ("quantity", "1E+14", "quantity 1E+14 is out of range"),
        ("unit_price", "1E+400", "unit_price 1E+400 is out of range"),
        ("quantity", "0", "quantity must be > 0, got 0.0000"),
        ("quantity", "-0.0000", "quantity must be > 0, got 0.0000"),
        ("unit_price", "-0.5", "unit_price must be >= 0, got -0.5000"),
    ],
)
def test_amounts_that_would_need_rounding_are_refused(field: str, value: Any, message: str) -> None:
    order, _ = sample_order(SNAPSHOT_DRAFT)
    bad = line_from_values(tuple({**_LINE_3, "line_no": 1, field: value}.values()), DRAFT)
    with pytest.raises(DraftRefused) as info:
        _render(order, [bad])
    assert str(info.value).startswith(f"draft {DRAFT}: line 1: {message}")


def test_the_old_contradiction_is_refused_not_printed() -> None:
    """quantity 1.00005 × 10000.0000 used to print "1.0001" beside a total of "10000.50"."""
    line = DraftLine(1, "I", None, "d", Decimal("1.00005"), "PCE", Decimal("10000.0000"), None)
    with pytest.raises(DraftRefused, match=r"line 1: quantity 1\.00005 has more than 4 decimals"):
        build_line(line)


@pytest.mark.parametrize(
    "value,printed",
    [
        ("1.50000", "1.5000"),  # trailing zeros are not decimals that need rounding
        ("1.5E+2", "150.0000"),  # SQLite writes REALs as text with an exponent
        ("7", "7.0000"),
        (7, "7.0000"),
        (0.1, "0.1000"),  # a float is taken by the digits it was written with
        (Decimal("2.5000"), "2.5000"),
        ("99999999999999.9999", "99999999999999.9999"),
    ],
)
def test_exact_amounts_in_every_shape_are_printed_as_written(value: Any, printed: str) -> None:
    line = line_from_values(tuple({**_LINE_3, "quantity": value}[f] for f in LINE_FIELDS), DRAFT)
    exported, _ = build_line(line)
    assert exported.quantity == printed


# --- the document never contradicts itself -----------------------------------------------------

_PLACES = st.integers(min_value=0, max_value=6)


@st.composite
def stored_amount(draw: st.DrawFn, *, minimum: int) -> Any:
    """A decimal as a database may deliver it: Decimal (PostgreSQL), text, int or float (SQLite)."""
    places = draw(_PLACES)
    units = draw(st.integers(min_value=minimum, max_value=10**14 * 10**places + 10))
    value = Decimal(units).scaleb(-places)
    form = draw(st.sampled_from(["decimal", "text", "exponent", "int", "float"]))
    if form == "decimal":
        return value
    if form == "text":
        return format(value, "f")
    if form == "exponent":
        return f"{value:E}"
    if form == "int":
        return int(value) if value == value.to_integral_value() else str(value)
    return float(value)


def _as_written(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


# Wide enough for every product of two numeric(18,4) values and for any drawn value.
_EXACT = Context(prec=100, rounding=ROUND_HALF_UP)


def _half_up(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), context=_EXACT)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    amounts=st.lists(
        st.tuples(stored_amount(minimum=0), stored_amount(minimum=0)), min_size=1, max_size=5
    )
)
@example(amounts=[("1.00005", "10000.0000")])
@example(amounts=[(Decimal("0.0050"), Decimal("1")), ("0.005", "1.0000")])
@example(amounts=[(1.00005, 10000.0)])
def test_an_accepted_document_never_contradicts_itself(amounts: list[tuple[Any, Any]]) -> None:
    order, _ = sample_order(SNAPSHOT_DRAFT)
    lines = [
        line_from_values((n, f"I-{n}", None, "d", quantity, "PCE", price, None), DRAFT)
        for n, (quantity, price) in enumerate(amounts, start=1)
    ]
    exact = [(_as_written(q), _as_written(p)) for q, p in amounts]

    def needs_refusal(quantity: Decimal, price: Decimal) -> bool:
        return (
            any(
                v != v.quantize(Decimal("0.0001"), context=_EXACT) or abs(v) >= Decimal("1E+14")
                for v in (quantity, price)
            )
            or not quantity > 0
        )

    try:
        data = _render(order, lines)
    except DraftRefused as exc:
        event("refused")
        assert any(needs_refusal(q, p) for q, p in exact), exc
        assert str(exc).startswith(f"draft {DRAFT}: line ")
        return
    event("accepted")
    assert not any(needs_refusal(q, p) for q, p in exact)
    document = parse_document(data)
    for written, (quantity, price) in zip(document.lines, exact, strict=True):
        # What the document prints is what was stored, and its total follows from what it prints.
        assert Decimal(written.quantity) == quantity and Decimal(written.unit_price) == price
        assert Decimal(written.line_total) == _half_up(
            _EXACT.multiply(Decimal(written.quantity), Decimal(written.unit_price))
        )
    net = Decimal(0)
    for line in document.lines:
        net = _EXACT.add(net, Decimal(line.line_total))
    assert Decimal(document.totals.net_amount) == net


def test_dates_from_postgres_stay_dates() -> None:
    row = {**postgres_header(), "order_date": date(2026, 1, 2)}
    assert draft_from_values(row).order_date == date(2026, 1, 2)
