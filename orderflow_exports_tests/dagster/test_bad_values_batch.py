"""One run over a batch with drafts holding bad stored values in the middle, on SQLite and
PostgreSQL: the good drafts are sent, each bad one is refused permanently (no erp_export row: its
document is refused before any attempt exists, so nothing was sent and nothing is left to
reconcile), the run fails naming every bad draft, field and value, and the step is not retried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import text

from orderflow_exports.defs.assets import NO_RUN_RETRY_TAGS
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv, orderflow_environment


@pytest.fixture
def env(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OrderflowEnv]:
    """The embedded environment, with OrderFlow's tables on SQLite or on PostgreSQL."""
    with orderflow_environment(database_url, tmp_path, monkeypatch) as environment:
        yield environment


# draft id → (SQL that spoils it, what the run's failure must say about it). Header values are
# refused by approved_drafts and again by export_json; line values only by export_json.
_SPOILERS_BOTH = {
    "NAN": (
        "UPDATE draft_order_line SET quantity = {numeric} WHERE id = 'NAN-L2'",
        "line 2: quantity",  # 'NaN' as text on SQLite, NaN as a Decimal on PostgreSQL
    ),
    "STR": (
        "UPDATE draft_order SET ship_to = {json} WHERE id = 'STR'",
        "ship_to '\"Main St 1\"' is not a JSON object",
    ),
}
_SPOILERS_SQLITE = {
    "ABC": (
        "UPDATE draft_order_line SET quantity = 'abc' WHERE id = 'ABC-L1'",
        "line 1: quantity 'abc' is not a finite decimal number",
    ),
    "EMPTY": (
        "UPDATE draft_order_line SET unit_price = '' WHERE id = 'EMPTY-L3'",
        "line 3: unit_price '' is not a finite decimal number",
    ),
    "INF": (
        "UPDATE draft_order_line SET unit_price = 'Infinity' WHERE id = 'INF-L1'",
        "line 1: unit_price 'Infinity' is not a finite decimal number",
    ),
    "DATE": (
        "UPDATE draft_order SET order_date = '2026-13-01' WHERE id = 'DATE'",
        "order_date '2026-13-01' is not a date (YYYY-MM-DD)",
    ),
    "JUNK": (
        "UPDATE draft_order SET order_date = 'garbage' WHERE id = 'JUNK'",
        "order_date 'garbage' is not a date (YYYY-MM-DD)",
    ),
    "CUR": (
        "UPDATE draft_order SET currency = 'euro' WHERE id = 'CUR'",
        "currency 'euro' is not a 3-letter ISO 4217 code",
    ),
    "DEC5": (
        "UPDATE draft_order_line SET quantity = '1.00005', unit_price = '10000.0000' "
        "WHERE id = 'DEC5-L1'",
        "line 1: quantity 1.00005 has more than 4 decimals",
    ),
}


def _events(result: dg.ExecuteInProcessResult, event_type: str, step: str) -> list:
    return [e for e in result.all_events if e.event_type_value == event_type and e.step_key == step]


def test_bad_drafts_in_a_batch_are_refused_and_the_rest_is_sent(env: OrderflowEnv) -> None:
    postgres = env.engine.dialect.name == "postgresql"
    spoilers = dict(_SPOILERS_BOTH) if postgres else {**_SPOILERS_BOTH, **_SPOILERS_SQLITE}
    env.add_local_connector("acme")
    # good, bad, good, bad, ..., good: every bad draft sits between two good ones.
    ids = ["G-0"]
    for n, bad in enumerate(spoilers, start=1):
        ids += [bad, f"G-{n}"]
    keys = env.add_drafts(*(SampleDraft("acme", draft_id) for draft_id in ids))
    numeric = "CAST('NaN' AS numeric)" if postgres else "'NaN'"
    json_text = """CAST('"Main St 1"' AS json)""" if postgres else """'"Main St 1"'"""
    with env.engine.begin() as conn:
        for sql, _ in spoilers.values():
            conn.execute(text(sql.format(numeric=numeric, json=json_text)))

    result = env.run_export(keys)

    assert not result.success
    good = [k for k, draft_id in zip(keys, ids, strict=True) if draft_id.startswith("G-")]
    bad = {k: spoilers[d] for k, d in zip(keys, ids, strict=True) if d in spoilers}
    for key in good:
        [row] = env.exports(key)
        assert row.status is ExportStatus.SENT
        assert Path(row.storage_key).read_bytes() == Path(row.dropzone_path).read_bytes()
    for key in bad:
        assert env.exports(key) == []  # refused before any attempt: no row, no file
    assert len(os.listdir(env.outbox("acme"))) == len(good)
    [failure] = _events(result, "STEP_FAILURE", "export_json")
    description = failure.event_specific_data.error.message  # type: ignore[union-attr]
    assert f"{len(bad)} export(s) failed, {len(good)} succeeded" in description
    for key, (_, message) in bad.items():
        assert f"{key}: DraftRefused (permanent): draft {key}: {message}" in description
    # Permanent: neither the step nor the run is tried again.
    assert len(_events(result, "STEP_START", "export_json")) == 1
    assert not _events(result, "STEP_UP_FOR_RETRY", "export_json")
    run = env.instance.get_run_by_id(result.run_id)
    assert run is not None and NO_RUN_RETRY_TAGS.items() <= run.tags.items()
    # The spool keeps nothing of the refused drafts.
    spool = env.home / "orderflow" / "spool"
    assert not [p for p in spool.rglob("*") if p.is_file()]
