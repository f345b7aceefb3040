import dataclasses
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

import orderflow_exports
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.document import (
    ExportDocument,
    build_header,
    fixed,
    json_schema_text,
    parse_document,
    write_document,
)
from orderflow_exports.domain.errors import DraftRefused
from orderflow_exports_tests.support.documents import (
    SNAPSHOT_CREATED_AT,
    SNAPSHOT_DRAFT,
    SNAPSHOT_EXPORT_ID,
    render,
    sample_order,
)

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "export_json_v1.snapshot.json"
SCHEMA = (
    Path(orderflow_exports.__file__).parent / "schemas" / "orderflow_export_json_v1.schema.json"
)


def test_golden_snapshot_bytes() -> None:
    data, stats = render(SNAPSHOT_DRAFT)
    assert data == SNAPSHOT.read_bytes()
    assert stats.byte_size == len(data)
    assert stats.line_count == 5


def test_snapshot_is_utf8_without_bom_and_has_contract_key_order() -> None:
    data = SNAPSHOT.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert "Müller".encode() in data  # not \u-escaped
    doc = json.loads(data)
    assert list(doc) == ["schema_version", "export", "org_id", "order", "lines", "totals"]
    assert list(doc["export"]) == ["export_id", "attempt", "created_at", "connector"]
    assert list(doc["order"]) == [
        "draft_order_id",
        "customer_po_number",
        "customer",
        "order_date",
        "requested_delivery_date",
        "currency",
        "ship_to",
        "notes",
        "approved_at",
    ]
    assert list(doc["lines"][0]) == [
        "line_no",
        "erp_item_number",
        "customer_item_number",
        "description",
        "quantity",
        "uom",
        "unit_price",
        "line_total",
        "requested_delivery_date",
    ]
    assert list(doc["totals"]) == ["line_count", "net_amount", "currency"]
    assert doc["export"]["created_at"] == "2026-11-26T10:15:30Z"
    assert doc["lines"][1]["unit_price"] == "0.0000"
    assert doc["lines"][0]["quantity"] == "1.2345"


def test_written_document_validates_against_the_model() -> None:
    data, stats = render(SNAPSHOT_DRAFT)
    doc = parse_document(data)
    assert isinstance(doc, ExportDocument)
    assert doc.totals.net_amount == stats.net_amount == "69.57"
    assert sum(Decimal(line.line_total) for line in doc.lines) == Decimal(doc.totals.net_amount)


def test_checked_in_json_schema_matches_the_models() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == json_schema_text(), (
        "the models changed: run `orderflow-exports schema --write "
        "orderflow_exports/schemas/orderflow_export_json_v1.schema.json`"
    )


@pytest.mark.parametrize(
    "value,places,expected",
    [
        (Decimal("21.6665"), 2, "21.67"),
        (Decimal("0.005"), 2, "0.01"),
        (Decimal("0.0049"), 2, "0.00"),
        (Decimal("2.675"), 2, "2.68"),
        (Decimal("1E+3"), 4, "1000.0000"),
        (Decimal("1.23456"), 4, "1.2346"),
        (Decimal("-0.0001"), 2, "0.00"),
        (Decimal("99999999999999.9999"), 4, "99999999999999.9999"),
        (Decimal("1E-7"), 4, "0.0000"),
    ],
)
def test_fixed_rounds_half_up_in_plain_notation(value: Decimal, places: int, expected: str) -> None:
    assert fixed(value, places) == expected


def test_totals_are_sums_of_rounded_line_totals() -> None:
    data, _ = render(SampleDraft("acme", "D-9", lines=40))
    doc = json.loads(data)
    total = sum(Decimal(line["line_total"]) for line in doc["lines"])
    assert Decimal(doc["totals"]["net_amount"]) == total
    for line in doc["lines"]:
        exact = Decimal(line["quantity"]) * Decimal(line["unit_price"])
        assert abs(Decimal(line["line_total"]) - exact) <= Decimal("0.005")
        assert "e" not in line["quantity"].lower() and "e" not in line["line_total"].lower()


def _write(order, lines) -> bytes:  # type: ignore[no-untyped-def]
    header = build_header(
        order, export_id=SNAPSHOT_EXPORT_ID, attempt=1, created_at=SNAPSHOT_CREATED_AT
    )
    out = io.BytesIO()
    write_document(out, header, lines)
    return out.getvalue()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"quantity": Decimal(0)}, "quantity must be > 0"),
        ({"quantity": Decimal("-1")}, "quantity must be > 0"),
        ({"unit_price": Decimal("-0.01")}, "unit_price must be >= 0"),
        ({"description": ""}, "description"),
        ({"uom": ""}, "uom"),
        ({"line_no": 3}, "expected 1, got 3"),
    ],
)
def test_bad_lines_are_refused_with_the_line_named(change: dict, message: str) -> None:
    order, lines = sample_order(SampleDraft("acme", "D-1", lines=2))
    lines[0] = dataclasses.replace(lines[0], **change)
    with pytest.raises(DraftRefused, match=message):
        _write(order, lines)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"currency": "euro"}, "currency"),
        ({"ship_to": {"name": "x", "street": "y", "postal_code": "1", "city": "z"}}, "country"),
        (
            {
                "ship_to": {
                    "name": "x",
                    "street": "y",
                    "postal_code": "1",
                    "city": "z",
                    "country": "DEU",
                }
            },
            "country",
        ),
        ({"customer_name": ""}, "name"),
    ],
)
def test_bad_headers_are_refused(change: dict, message: str) -> None:
    order, lines = sample_order(SampleDraft("acme", "D-1", lines=1))
    with pytest.raises(DraftRefused, match=message):
        _write(dataclasses.replace(order, **change), lines)


def test_a_draft_without_lines_is_refused() -> None:
    order, _ = sample_order(SampleDraft("acme", "D-1", lines=1))
    with pytest.raises(DraftRefused, match="no lines"):
        _write(order, [])


def test_timestamps_without_zone_are_refused() -> None:
    order, lines = sample_order(SampleDraft("acme", "D-1", lines=1))
    with pytest.raises(DraftRefused, match="time zone"):
        _write(
            dataclasses.replace(order, approved_at=SNAPSHOT_CREATED_AT.replace(tzinfo=None)), lines
        )
