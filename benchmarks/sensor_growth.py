"""Tick cost of ``approved_drafts_sensor`` (and the ack pass's queries) as history grows.

For each history size (exported drafts, by default 0 / 100,000 / 1,000,000) and each database
(SQLite, PostgreSQL) this builds a fresh environment, bulk-loads the history with plain SQL
(``draft_order`` APPROVED rows, one ACKED ``erp_export`` and one ``erp_export_request`` per
draft, all changed long ago) and the matching dynamic partitions into the Dagster instance,
runs one first tick (the whole-backlog read that sets the cursor, reported apart), then times
ticks that each find 50 new approvals from that cursor. It prints the median tick per size and
the ratio largest/0 measured in the same run (target: ratio <= 2 and tick <= 0.1 s).

The ack sensor's per-tick queries (SENT exports past the deadline, the latest export of a
draft) are timed the same way against the ACKED history.

    .venv/bin/python benchmarks/sensor_growth.py [--sizes 0,100000,1000000]
        [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import (
    machine_line,
    make_env,
    median,
    quiet,
    temp_postgres_database,
    temp_root,
    timed,
    verdict,
)

NEW_PER_TICK = 50
ROUNDS = 5
_PARTITION_CHUNK = 20_000
_HISTORY_AT = "2025-01-01 00:00:00.000000"

_SHIP_TO = (
    '{"name": "Lager", "street": "Hauptstr. 5", "postal_code": "80331", "city": "M", '
    '"country": "DE"}'
)


def _load_history(engine: Any, size: int) -> None:
    """``size`` exported drafts of org ``acme`` in three INSERT … SELECT statements."""
    if size == 0:
        return
    from sqlalchemy import text

    pg = engine.dialect.name == "postgresql"
    if pg:
        seq = f"SELECT n FROM generate_series(0, {size - 1}) AS n"
        at = "TIMESTAMPTZ '2025-01-01 00:00:00+00'"
        ship = f"'{_SHIP_TO}'::json"
        false = "false"
        pad_id = "lpad(n::text, 8, '0')"
    else:
        seq = (
            f"WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < {size - 1}) "
            "SELECT n FROM s"
        )
        at = f"'{_HISTORY_AT}'"
        ship = f"'{_SHIP_TO}'"
        false = "0"
        pad_id = "printf('%08d', n)"
    draft_id = f"('H-' || {pad_id})"
    statements = [
        f"""INSERT INTO draft_order (id, org_id, status, customer_po_number, customer_erp_number,
            customer_name, order_date, requested_delivery_date, currency, ship_to, notes,
            approved_at, updated_at)
            SELECT {draft_id}, 'acme', 'APPROVED', 'PO', 'C-1', 'Customer', DATE '2024-12-30',
            NULL, 'EUR', {ship}, NULL, {at}, {at} FROM ({seq}) AS q""",
        f"""INSERT INTO erp_export (id, org_id, draft_order_id, connector_type, attempt, status,
            filename, dropzone_path, storage_key, content_sha256, byte_size, line_count, forced,
            created_at, sent_at, acked_at, updated_at)
            SELECT 'x-' || {pad_id}, 'acme', {draft_id}, 'DROPZONE_JSON_V1', 1, 'ACKED',
            'f.json', '/in/f.json', 'k', '{"0" * 64}', 100, 1, {false}, {at}, {at}, {at}, {at}
            FROM ({seq}) AS q""",
        f"""INSERT INTO erp_export_request (org_id, draft_order_id, request_count, redrive_count,
            last_requested_at, draft_updated_at, last_outcome, last_reason, last_outcome_at,
            next_due_at, needs_person_since, revision, updated_at)
            SELECT 'acme', {draft_id}, 1, 0, {at}, {at}, 'SENT', 'sent', {at}, NULL, NULL, 1, {at}
            FROM ({seq}) AS q""",
    ]
    if not pg:
        # SQLite's DATE literal is not a keyword: keep the stored text as SQLAlchemy writes it.
        statements = [s.replace("DATE '2024-12-30'", "'2024-12-30'") for s in statements]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def _load_partitions(instance: Any, size: int) -> None:
    from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME

    for start in range(0, size, _PARTITION_CHUNK):
        keys = [f"acme:H-{n:08d}" for n in range(start, min(size, start + _PARTITION_CHUNK))]
        instance.add_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME, keys)


def _tick(instance: Any, now: datetime, cursor: str | None) -> tuple[float, Any, str | None]:
    import dagster as dg

    from orderflow_exports import defs
    from orderflow_exports.defs.resources import DatabaseResource
    from orderflow_exports.defs.sensors import evaluate_approved_drafts

    database = DatabaseResource()
    with dg.build_sensor_context(
        instance=instance, resources={"database": database}, definitions=defs, cursor=cursor
    ) as context:
        seconds, result = timed(lambda: evaluate_approved_drafts(context, database, now))
        return seconds, result, context.cursor


def measure(size: int, database_url: str | None, label: str) -> dict[str, float]:
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.demo import SampleDraft, insert_drafts
    from orderflow_exports.domain.naming import DraftRef

    with temp_root("of-sensor-growth-") as root:
        env = make_env(root, database_url=database_url)
        env.local_connector("acme")
        load_s, _ = timed(lambda: _load_history(env.engine, size))
        instance = env.instance()
        part_s, _ = timed(lambda: _load_partitions(instance, size))
        now = datetime.now(UTC)
        first_s, _, cursor = _tick(instance, now, None)
        ticks: list[float] = []
        for round_no in range(ROUNDS):
            at = now + timedelta(seconds=30 * (round_no + 1))
            fresh = [
                SampleDraft("acme", f"N{round_no}-{n:03d}", approved_at=at - timedelta(seconds=5))
                for n in range(NEW_PER_TICK)
            ]
            insert_drafts(env.engine, fresh)
            seconds, result, cursor = _tick(instance, at, cursor)
            requested = sum(
                len(r.partition_keys) for r in getattr(result, "dynamic_partitions_requests", [])
            )
            if requested != NEW_PER_TICK:
                raise SystemExit(f"{label} {size}: tick requested {requested}, not {NEW_PER_TICK}")
            ticks.append(seconds)
        ledger = SqlExportLedger(env.engine)
        ack_runs = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            ledger.sent_before("acme", now, 500)
            ledger.latest(DraftRef("acme", "H-00000000"))
            ack_runs.append(time.perf_counter() - start)
        env.engine.dispose()
        print(
            f"  {label:10} history {size:>9,}: load {load_s:6.1f} s + partitions {part_s:6.1f} s;"
            f" first tick {first_s:6.2f} s; tick (+{NEW_PER_TICK}) median {median(ticks):.3f} s"
            f" (min {min(ticks):.3f}, max {max(ticks):.3f});"
            f" ack queries {median(ack_runs) * 1000:.1f} ms",
            flush=True,
        )
        return {"tick": median(ticks), "ack": median(ack_runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0,100000,1000000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    quiet()
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the tick's own INFO summary lines
    sizes = [int(s) for s in args.sizes.split(",")]
    print(machine_line())
    print(f"approved_drafts_sensor tick with {NEW_PER_TICK} new approvals, median of {ROUNDS}")
    for database in args.databases.split(","):
        figures: dict[int, dict[str, float]] = {}
        for size in sizes:
            if database == "postgresql":
                with temp_postgres_database() as url:
                    figures[size] = measure(size, url, database)
            else:
                figures[size] = measure(size, None, database)
        base, top = min(sizes), max(sizes)
        if base != top:
            ratio = figures[top]["tick"] / figures[base]["tick"]
            ack_ratio = figures[top]["ack"] / figures[base]["ack"]
            met = ratio <= 2 and figures[top]["tick"] <= 0.1
            print(
                f"  {database}: tick ratio {top:,}/{base:,} = {ratio:.2f} "
                f"(tick {figures[top]['tick']:.3f} s) -> {verdict(met)}; "
                f"ack queries ratio {ack_ratio:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
