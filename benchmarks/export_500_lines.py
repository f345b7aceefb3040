"""DB → validated file for a 500-line draft: the streaming writer against a whole-document build.

Measures, on the same database and draft, interleaved round by round so both see the same
machine state, and prints medians and ratios:

- ``read only``: the draft header and its lines read from the database (the floor: no document);
- ``streaming``: what an export does before publishing — header read and validated, lines read in
  chunks, each validated and written to a spool file with its SHA-256 computed on the way;
- ``whole document``: the baseline a streaming writer replaces — every line in memory, one
  ``ExportDocument`` validated and dumped as a whole, then written.

Target: streaming median ≤ 20 ms (the plan's goal is 2 s).

    .venv/bin/python benchmarks/export_500_lines.py [--rounds 30] [--lines 500] [--postgres]

``--postgres`` runs on a throwaway database on the tests' PostgreSQL server
(``ORDERFLOW_TEST_PG_ADMIN_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``)
instead of a temporary SQLite file; lines then come through a server-side cursor.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from _common import (
    machine_line,
    make_env,
    median,
    p90,
    quiet,
    temp_postgres_database,
    temp_root,
    timed,
    verdict,
)

TARGET_MS = 20.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per case (>= 20)")
    parser.add_argument("--lines", type=int, default=500, help="lines of the draft")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    quiet()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(temp_postgres_database()) if args.postgres else None
        return measure(args, url)


def measure(args: argparse.Namespace, database_url: str | None) -> int:
    """Set up the draft on ``database_url`` (SQLite when None), time the cases, print."""
    from orderflow_exports.adapters.sql.drafts import SqlDraftSource
    from orderflow_exports.demo import SampleDraft, insert_drafts
    from orderflow_exports.domain.document import (
        ExportDocument,
        Totals,
        build_header,
        build_line,
        fixed,
        write_document,
    )
    from orderflow_exports.domain.drafts import ensure_exportable
    from orderflow_exports.domain.naming import DraftRef

    with temp_root("bench-500-") as root:
        env = make_env(root, database_url=database_url)
        draft_id = f"B-{uuid.uuid4().hex[:8]}"
        insert_drafts(env.engine, [SampleDraft("bench", draft_id, lines=args.lines)])
        ref = DraftRef("bench", draft_id)
        drafts = SqlDraftSource(env.engine)
        spool = root / "spool.json"
        created_at = datetime.now(UTC).replace(microsecond=0)
        export_id = str(uuid.uuid4())

        def read_only() -> int:
            ensure_exportable(ref, drafts.get_draft(ref))
            return sum(1 for _ in drafts.iter_lines(ref))

        def streaming() -> str:
            draft = ensure_exportable(ref, drafts.get_draft(ref))
            header = build_header(draft, export_id=export_id, attempt=1, created_at=created_at)
            with spool.open("wb") as out:
                return write_document(out, header, drafts.iter_lines(ref)).sha256

        def whole_document() -> str:
            draft = ensure_exportable(ref, drafts.get_draft(ref))
            header = build_header(draft, export_id=export_id, attempt=1, created_at=created_at)
            built = [build_line(line) for line in drafts.iter_lines(ref)]
            net = sum((total for _, total in built), start=Decimal(0))
            document = ExportDocument(
                export=header.export,
                org_id=header.org_id,
                order=header.order,
                lines=[line for line, _ in built],
                totals=Totals(
                    line_count=len(built),
                    net_amount=fixed(net, 2),
                    currency=header.order.currency,
                ),
            )
            data = document.model_dump_json().encode()
            spool.write_bytes(data)
            return hashlib.sha256(data).hexdigest()

        cases = {"read only": read_only, "streaming": streaming, "whole document": whole_document}
        for fn in cases.values():  # warm-up: imports, statement caches, connection pool
            fn()
            fn()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                times[name].append(timed(fn)[0])
        streaming()
        streamed_size = spool.stat().st_size

        print(f"export_500_lines: {args.lines}-line draft, {args.rounds} rounds per case")
        print(f"  {machine_line()}")
        print(f"  database: {env.engine.url.get_backend_name()}; file {streamed_size:,} bytes")
        print(f"  {'case':<16} {'median ms':>10} {'p90 ms':>8} {'µs/line':>8}")
        for name, values in times.items():
            med = median(values)
            print(
                f"  {name:<16} {med * 1000:>10.2f} {p90(values) * 1000:>8.2f} "
                f"{med / args.lines * 1e6:>8.1f}"
            )
        stream_ms = median(times["streaming"]) * 1000
        whole_ms = median(times["whole document"]) * 1000
        read_ms = median(times["read only"]) * 1000
        print(f"  streaming / whole document: {stream_ms / whole_ms:.2f}x the time")
        print(f"  streaming / read only:      {stream_ms / read_ms:.2f}x the time")
        print(
            f"  target: streaming median ≤ {TARGET_MS:g} ms → {stream_ms:.2f} ms "
            f"({TARGET_MS / stream_ms:.1f}x headroom): {verdict(stream_ms <= TARGET_MS)}"
        )
        env.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
