"""A ~100 MB export (300k lines) through the real job, against the same job on a 500-line draft.

Both drafts live in one SQLite database with local dropzones and the local export store. Every
run is ``export_drafts_job`` executed in process in a fresh child process (so each case's peak
RSS is its own, from ``resource.getrusage``), with ``force`` so that every round sends a new
file. Rounds alternate small, big, small, big, ... and the parent checks each file it produced.

Targets: the big run's job wall time ≤ 5 s, and its peak RSS ≤ 64 MiB above the small run's.

    .venv/bin/python benchmarks/export_100mb.py [--rounds 3] [--lines 300000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    MiB,
    add_partitions,
    insert_drafts,
    machine_line,
    make_env,
    median,
    quiet,
    run_export,
    temp_root,
    timed,
    verdict,
)

TARGET_SECONDS = 5.0
TARGET_EXTRA_RSS_MIB = 64.0
# Longer descriptions than the demo's, so that 300k lines make ~100 MB as in the issue.
DESCRIPTION_PAD = 85


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per case")
    parser.add_argument("--lines", type=int, default=300_000, help="lines of the big draft")
    parser.add_argument("--small-lines", type=int, default=500, help="lines of the baseline")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.key)
    quiet()

    from orderflow_exports.demo import SampleDraft

    with temp_root("bench-100mb-") as root:
        env = make_env(root)
        env.local_connector("bench")
        started = time.perf_counter()
        small = SampleDraft("bench", "SMALL", lines=args.small_lines)
        big = SampleDraft("bench", "BIG", lines=args.lines)
        insert_drafts(env.engine, [small, big], description_pad=DESCRIPTION_PAD)
        keys = {"small": "bench:SMALL", "big": "bench:BIG"}
        with env.instance() as instance:
            add_partitions(instance, keys.values())
        setup = time.perf_counter() - started

        results: dict[str, list[dict[str, Any]]] = {"small": [], "big": []}
        for _ in range(args.rounds):
            for case, key in keys.items():
                outcome = run_child(key, env.env_vars())
                outcome["checked"] = check_latest(env, key, outcome)
                results[case].append(outcome)

        print(
            f"export_100mb: {args.lines:,}-line draft vs {args.small_lines}-line draft, "
            f"{args.rounds} round(s) each, each run in its own process (setup {setup:.1f} s)"
        )
        print(f"  {machine_line()}")
        print(
            f"  {'case':<6} {'lines':>8} {'file MB':>8} {'job s':>7} {'job CPU s':>10} "
            f"{'process s':>10} {'peak RSS MiB':>13} {'RSS at start MiB':>17}"
        )
        summary: dict[str, dict[str, float]] = {}
        for case, runs in results.items():
            failed = [r for r in runs if not r["success"] or not r["checked"]]
            if failed:
                print(f"  {case}: {len(failed)} run(s) failed or produced a wrong file: {failed}")
                return 1
            summary[case] = {
                "job": median([r["job_seconds"] for r in runs]),
                "cpu": median([r["cpu_seconds"] for r in runs]),
                "process": median([r["process_seconds"] for r in runs]),
                "rss": median([r["max_rss_kib"] / 1024 for r in runs]),
                "rss_start": median([r["rss_after_import_kib"] / 1024 for r in runs]),
                "size": runs[-1]["byte_size"] / 1e6,
                "lines": runs[-1]["line_count"],
            }
            s = summary[case]
            print(
                f"  {case:<6} {s['lines']:>8,} {s['size']:>8.1f} {s['job']:>7.2f} "
                f"{s['cpu']:>10.2f} {s['process']:>10.2f} {s['rss']:>13.1f} {s['rss_start']:>17.1f}"
            )
        big_s, small_s = summary["big"], summary["small"]
        extra_rss = big_s["rss"] - small_s["rss"]
        extra_job = big_s["job"] - small_s["job"]
        print(
            f"  big − small: +{extra_job:.2f} s job time "
            f"({big_s['size'] / max(extra_job, 1e-9):.0f} MB/s of export work), "
            f"+{extra_rss:.1f} MiB peak RSS"
        )
        print(f"  big / small: {big_s['job'] / small_s['job']:.1f}x the job time")
        print(
            f"  target: big job ≤ {TARGET_SECONDS:g} s → {big_s['job']:.2f} s: "
            f"{verdict(big_s['job'] <= TARGET_SECONDS)}"
        )
        print(
            f"  target: ≤ {TARGET_EXTRA_RSS_MIB:g} MiB more peak RSS → +{extra_rss:.1f} MiB: "
            f"{verdict(extra_rss <= TARGET_EXTRA_RSS_MIB)}"
        )
        env.engine.dispose()
    return 0


def run_child(key: str, env_vars: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--key", key]
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        env={**os.environ, **env_vars},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"child for {key} failed ({completed.returncode}):\n{completed.stderr}")
    outcome: dict[str, Any] = json.loads(lines[-1])
    outcome["process_seconds"] = elapsed
    return outcome


def check_latest(env: Any, key: str, outcome: dict[str, Any]) -> bool:
    """The run's file in the dropzone and in the store: the row's size and SHA-256."""
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.naming import DraftRef
    from orderflow_exports.domain.status import ExportStatus

    row = SqlExportLedger(env.engine).latest(DraftRef.from_partition_key(key))
    if row is None or row.status is not ExportStatus.SENT or row.id != outcome["export_id"]:
        return False
    for path in (Path(row.dropzone_path), Path(row.storage_key)):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda handle=handle: handle.read(MiB), b""):
                digest.update(chunk)
        if digest.hexdigest() != row.content_sha256 or path.stat().st_size != row.byte_size:
            return False
    return True


def child(key: str) -> int:
    """One run in this process; prints one JSON line with the figures."""
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from orderflow_exports import defs  # noqa: F401  (import cost outside the timed run)

    before = resource.getrusage(resource.RUSAGE_SELF)
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        seconds, result = timed(lambda: run_export(instance, [key], force=True))
        after = resource.getrusage(resource.RUSAGE_SELF)
        materializations = [
            event.event_specific_data.materialization  # type: ignore[union-attr]
            for event in result.all_events
            if event.event_type_value == "ASSET_MATERIALIZATION"
            and event.asset_key == dg.AssetKey("export_json")
        ]
    metadata = {}
    if result.success:
        metadata = {k: v.value for k, v in materializations[0].metadata.items()}
    print(
        json.dumps(
            {
                "success": result.success,
                "job_seconds": seconds,
                # CPU seconds of the run: steadier than wall time on a shared machine.
                "cpu_seconds": (after.ru_utime + after.ru_stime)
                - (before.ru_utime + before.ru_stime),
                "max_rss_kib": after.ru_maxrss,
                "rss_after_import_kib": before.ru_maxrss,
                "export_id": metadata.get("export_id"),
                "byte_size": metadata.get("byte_size"),
                "line_count": metadata.get("line_count"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
