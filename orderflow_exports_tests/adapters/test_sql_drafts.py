"""SqlDraftSource on real SQLite and PostgreSQL: good rows render the golden bytes, bad stored
values refuse their draft (DraftRefused naming draft, line, field and value) instead of raising
whatever the driver or SQLAlchemy raises at fetch time.

Bad values are written with plain SQL, as another writer of OrderFlow core's tables could: SQLite
stores anything in any column; PostgreSQL only what its column types accept (numeric NaN, a JSON
string or an incomplete object in a json column, a 2-letter text in varchar(3)).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orderflow_exports.adapters.sql.drafts import _LINE_COLUMNS, SqlDraftSource
from orderflow_exports.demo import SampleDraft, insert_drafts
from orderflow_exports.domain.document import build_header, write_document
from orderflow_exports.domain.drafts import LINE_FIELDS, ensure_exportable
from orderflow_exports.domain.errors import DraftRefused
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports_tests.support.documents import (
    SNAPSHOT_CREATED_AT,
    SNAPSHOT_DRAFT,
    SNAPSHOT_EXPORT_ID,
)

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "export_json_v1.snapshot.json"


def _export_bytes(source: SqlDraftSource, ref: DraftRef) -> bytes:
    draft = ensure_exportable(ref, source.get_draft(ref))
    header = build_header(
        draft, export_id=SNAPSHOT_EXPORT_ID, attempt=1, created_at=SNAPSHOT_CREATED_AT
    )
    out = io.BytesIO()
    write_document(out, header, source.iter_lines(ref))
    return out.getvalue()


def test_line_columns_are_selected_in_the_parsers_order() -> None:
    assert tuple(c.name for c in _LINE_COLUMNS) == LINE_FIELDS


def test_good_rows_render_the_golden_snapshot_bytes(engine: Engine) -> None:
    insert_drafts(engine, [SNAPSHOT_DRAFT])
    source = SqlDraftSource(engine)
    data = _export_bytes(source, DraftRef(SNAPSHOT_DRAFT.org_id, SNAPSHOT_DRAFT.draft_id))
    assert data == SNAPSHOT.read_bytes()


# (table, column, stored value, expected message after "draft acme:BAD: ")
_BOTH = [
    # SQLite delivers the text 'NaN', PostgreSQL a Decimal NaN: the message shows which.
    (
        "line",
        "quantity",
        "NaN",
        {
            "sqlite": "line 2: quantity 'NaN' is not a finite decimal number",
            "postgresql": "line 2: quantity NaN is not a finite decimal number",
        },
    ),
    (
        "line",
        "unit_price",
        "NaN",
        {
            "sqlite": "line 2: unit_price 'NaN' is not a finite decimal number",
            "postgresql": "line 2: unit_price NaN is not a finite decimal number",
        },
    ),
    ("header", "ship_to", '"Main St 1"', "ship_to '\"Main St 1\"' is not a JSON object"),
    (
        "header",
        "ship_to",
        '{"name": "Lager"}',
        "ship_to {'name': 'Lager'} lacks street, postal_code, city, country",
    ),
    ("header", "currency", "eu", "currency 'eu' is not a 3-letter ISO 4217 code (e.g. EUR)"),
]
_SQLITE_ONLY = [
    ("line", "quantity", "abc", "line 2: quantity 'abc' is not a finite decimal number"),
    ("line", "quantity", "", "line 2: quantity '' is not a finite decimal number"),
    ("line", "quantity", "Infinity", "line 2: quantity 'Infinity' is not a finite decimal number"),
    ("line", "quantity", "1.00005", "line 2: quantity 1.00005 has more than 4 decimals"),
    # On the last line: SQLite sorts text after numbers, so a gap would be found first elsewhere.
    ("line", "line_no", "two", "a line: line_no 'two' is not a positive integer"),
    (
        "line",
        "requested_delivery_date",
        "soon",
        "line 2: requested_delivery_date 'soon' is not a date (YYYY-MM-DD)",
    ),
    ("header", "order_date", "garbage", "order_date 'garbage' is not a date (YYYY-MM-DD)"),
    ("header", "order_date", "2026-13-01", "order_date '2026-13-01' is not a date (YYYY-MM-DD)"),
    ("header", "ship_to", "Main St 1", "ship_to 'Main St 1' is not JSON"),
    ("header", "currency", "euro", "currency 'euro' is not a 3-letter ISO 4217 code (e.g. EUR)"),
    (
        "header",
        "approved_at",
        "yesterday",
        "approved_at 'yesterday' is not a timestamp (YYYY-MM-DD HH:MM:SS)",
    ),
]


def _store_bad_value(engine: Engine, table: str, column: str, value: Any) -> None:
    """BAD's header or line (2, or 3 for line_no) gets ``value``, bound as text."""
    placeholder = ":value"
    if engine.dialect.name == "postgresql":  # text into numeric / json needs a cast there
        if column in ("quantity", "unit_price"):
            placeholder = "CAST(:value AS numeric)"
        elif column == "ship_to":
            placeholder = "CAST(:value AS json)"
    if table == "line":
        table_name = "draft_order_line"
        condition = "id = 'BAD-L3'" if column == "line_no" else "id = 'BAD-L2'"
    else:
        table_name, condition = "draft_order", "id = 'BAD'"
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {table_name} SET {column} = {placeholder} WHERE {condition}"),
            {"value": value},
        )


def _check_refusal(
    engine: Engine, table: str, column: str, value: Any, message: str | dict[str, str]
) -> None:
    if isinstance(message, dict):
        message = message[engine.dialect.name]
    insert_drafts(engine, [SampleDraft("acme", "GOOD-1"), SampleDraft("acme", "BAD")])
    _store_bad_value(engine, table, column, value)
    source = SqlDraftSource(engine)
    with pytest.raises(DraftRefused) as info:
        _export_bytes(source, DraftRef("acme", "BAD"))
    assert str(info.value) == f"draft acme:BAD: {message}"
    # The draft next to it is read as before.
    assert _export_bytes(source, DraftRef("acme", "GOOD-1"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("table,column,value,message", _BOTH + _SQLITE_ONLY)
def test_bad_values_stored_in_sqlite_refuse_the_draft(
    engine: Engine, table: str, column: str, value: Any, message: str | dict[str, str]
) -> None:
    _check_refusal(engine, table, column, value, message)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("table,column,value,message", _BOTH)
def test_bad_values_stored_in_postgresql_refuse_the_draft(
    engine: Engine, table: str, column: str, value: Any, message: str | dict[str, str]
) -> None:
    _check_refusal(engine, table, column, value, message)
