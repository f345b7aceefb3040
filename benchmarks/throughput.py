"""Exports per minute: 1,000 drafts in one run over SFTP with the S3 store, vs one run per draft.

Everything is real and local: a private OpenSSH sshd on 127.0.0.1 (the test support's), a moto S3
server in a child process, SQLite for OrderFlow's tables, an embedded Dagster instance (SQLite).

1. ``batched``: ``--drafts`` approved drafts of ``--lines`` lines over ``--orgs`` orgs whose
   dropzones share one SFTP endpoint. ``approved_drafts_sensor`` is evaluated once; its run
   request (one per dropzone host, over the partitions it added) is executed in process.
2. Baselines that explain the batched figure, measured in the same run:
   ``dagster alone`` — a job of the same shape (two partitioned assets, single-run backfill) that
   does nothing, over as many partitions on the same instance: Dagster's own cost per partition;
   ``export path alone`` — ``--service`` drafts through ExportService and the archive, built from
   the same resources, without Dagster: our cost per export (database, document, SFTP, S3).
3. ``per partition``: ``--single`` more drafts, each exported by its own in-process run, the way
   a sensor without batching would do it; projected to ``--drafts`` for the ratio.
4. ``per partition, CLI`` (``--cli-runs``): the same through ``dagster job execute`` with the
   in-process executor, i.e. with a new process per run as a run launcher would start it.

Each phase checks what it exported: one SENT row, one file in the dropzone, one archived object per
draft. Target: ≥ 2,000 exports/min in the batched run on a quiet machine.

    .venv/bin/python benchmarks/throughput.py [--drafts 1000] [--lines 20] [--orgs 4]
        [--service 200] [--single 20] [--cli-runs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
from _common import (
    QUIET_RUN,
    BenchEnv,
    add_partitions,
    insert_drafts,
    ledger_counts,
    machine_line,
    make_env,
    moto_server,
    new_bucket,
    quiet,
    run_export,
    temp_root,
    timed,
    verdict,
)

TARGET_PER_MINUTE = 2000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drafts", type=int, default=1000, help="drafts in the batched run")
    parser.add_argument("--lines", type=int, default=20, help="lines per draft")
    parser.add_argument("--orgs", type=int, default=4, help="orgs sharing the SFTP endpoint")
    parser.add_argument("--service", type=int, default=200, help="drafts without Dagster")
    parser.add_argument("--single", type=int, default=20, help="drafts run one per run")
    parser.add_argument("--cli-runs", type=int, default=2, help="runs via `dagster job execute`")
    args = parser.parse_args()
    quiet()

    from orderflow_exports_tests.support.sshd import sshd_missing_reason, start_sshd, stop_sshd

    missing = sshd_missing_reason()
    if missing:
        print(f"throughput: cannot run: {missing}", file=sys.stderr)
        return 2

    with temp_root("bench-throughput-") as root:
        server = start_sshd(root / "sshd")
        os.environ["ORDERFLOW_SECRET_DIRS"] = str(server.secrets_root)
        try:
            with moto_server(root / "moto.log") as moto:
                bucket = new_bucket(moto)
                os.environ["AWS_ENDPOINT_URL"] = moto.endpoint_url
                env = make_env(root, store=f"s3://{bucket}/exports")
                orgs = [f"org{n:02d}" for n in range(1, args.orgs + 1)]
                for org in orgs:
                    outbox, acks = server.root / org / "outbox", server.root / org / "acks"
                    outbox.mkdir(parents=True)
                    acks.mkdir(parents=True)
                    env.upsert_connector(server.connector_config(org, str(outbox), str(acks)))
                report = Report(args, machine_line())

                def verify(expected: int, phase: str) -> None:
                    check(env, server.root, moto, bucket, expected, report, phase)

                with env.instance() as instance:
                    batched(env, instance, orgs, args, report)
                    verify(report.batched_drafts, "batched")
                    dagster_alone(instance, args.drafts, report)
                    export_path_alone(env, orgs, args, report)
                    done = report.batched_drafts + args.service
                    verify(done, "export path alone")
                    per_partition(env, instance, orgs, args, report)
                    done += args.single
                    verify(done, "per partition")
                    if args.cli_runs:
                        per_partition_cli(env, instance, orgs, args, report)
                        verify(done + args.cli_runs, "CLI runs")
                env.engine.dispose()
        finally:
            stop_sshd(server)
    return report.print()


class Report:
    """Collects the figures of the phases and prints them with ratios and the verdict."""

    def __init__(self, args: argparse.Namespace, machine: str) -> None:
        self.args = args
        self.machine = machine
        self.batched_drafts = 0
        self.figures: dict[str, float] = {}
        self.problems: list[str] = []

    def print(self) -> int:
        a, f = self.args, self.figures
        print(
            f"throughput: {a.drafts:,} drafts × {a.lines} lines over SFTP (private sshd on "
            f"127.0.0.1, {a.orgs} orgs on one endpoint) with the S3 store (moto server) and SQLite"
        )
        print(f"  {self.machine}")
        for problem in self.problems:
            print(f"  PROBLEM: {problem}")
        if "batched_run" not in f:
            return 1
        batched_rate = self.batched_drafts / f["batched_run"] * 60
        print(
            f"  batched:       sensor tick {f['sensor']:.2f} s → {f['run_requests']:.0f} run "
            f"request(s); run {f['batched_run']:.1f} s for {self.batched_drafts:,} exports = "
            f"{f['batched_run'] / self.batched_drafts * 1000:.1f} ms/export, "
            f"{batched_rate:,.0f} exports/min"
        )
        if "dagster_alone" in f and "export_path" in f:
            dagster_ms = f["dagster_alone"] / a.drafts * 1000
            ours_ms = f["export_path"] / a.service * 1000
            batched_ms = f["batched_run"] / self.batched_drafts * 1000
            print(
                f"  dagster alone: {dagster_ms:.1f} ms/partition (same job shape, no work, "
                f"{a.drafts:,} partitions in one run)"
            )
            print(
                f"  export path alone: {ours_ms:.1f} ms/export (ExportService + archive, "
                f"{a.service} drafts, no Dagster)"
            )
            print(
                f"  batched − (dagster alone + export path alone): "
                f"{batched_ms - dagster_ms - ours_ms:+.1f} ms/export"
            )
            print(
                f"  batched / dagster alone: {batched_ms / dagster_ms:.2f}x the floor's time per "
                f"partition (the floor's rate: {60_000 / dagster_ms:,.0f} partitions/min)"
            )
        if "single_run" in f:
            per_run = f["single_run"] / a.single
            rate = 60 / per_run
            print(
                f"  per partition: {a.single} runs in {f['single_run']:.1f} s = "
                f"{per_run:.2f} s/run (in process), {rate:,.0f} exports/min; "
                f"{a.drafts:,} would take {per_run * a.drafts / 60:.1f} min"
            )
            print(f"  batched / per partition (in process): {batched_rate / rate:.1f}x the rate")
        if "cli_run" in f:
            per_run = f["cli_run"] / a.cli_runs
            rate = 60 / per_run
            print(
                f"  per partition via `dagster job execute`: {per_run:.2f} s/run, "
                f"{rate:,.1f} exports/min; {a.drafts:,} would take {per_run * a.drafts / 60:.0f} "
                f"min; batched is {batched_rate / rate:.0f}x the rate"
            )
        print(
            f"  target: ≥ {TARGET_PER_MINUTE:,.0f} exports/min batched → {batched_rate:,.0f}: "
            f"{verdict(batched_rate >= TARGET_PER_MINUTE and not self.problems)}"
        )
        return 1 if self.problems else 0


def insert(env: BenchEnv, orgs: list[str], prefix: str, count: int, lines: int) -> list[str]:
    from datetime import timedelta

    from orderflow_exports.demo import DEMO_APPROVED_AT, SampleDraft

    samples = [
        SampleDraft(
            orgs[n % len(orgs)],
            f"{prefix}-{n:05d}",
            lines=lines,
            # Distinct approval times: the sensor takes the oldest first, in this order.
            approved_at=DEMO_APPROVED_AT + timedelta(seconds=n),
        )
        for n in range(count)
    ]
    insert_drafts(env.engine, samples)
    return [f"{s.org_id}:{s.draft_id}" for s in samples]


def batched(
    env: BenchEnv, instance: Any, orgs: list[str], args: argparse.Namespace, report: Report
) -> None:
    from orderflow_exports import defs
    from orderflow_exports.defs.resources import DatabaseResource
    from orderflow_exports.defs.sensors import approved_drafts_sensor

    insert(env, orgs, "B", args.drafts, args.lines)

    def tick() -> Any:
        with dg.build_sensor_context(
            instance=instance, resources={"database": DatabaseResource()}, definitions=defs
        ) as context:
            return approved_drafts_sensor(context)

    seconds, result = timed(tick)
    if not isinstance(result, dg.SensorResult):
        report.problems.append(f"the sensor skipped: {result}")
        return
    # The daemon applies the partition requests; here the script does (FACTS.md).
    for request in result.dynamic_partitions_requests or []:
        add_partitions(instance, request.partition_keys)
    report.figures["sensor"] = seconds
    report.figures["run_requests"] = len(result.run_requests or [])
    run_seconds = 0.0
    for request in result.run_requests or []:
        start = request.tags.get("dagster/asset_partition_range_start") or request.partition_key
        end = request.tags.get("dagster/asset_partition_range_end") or request.partition_key
        keys = [start, end] if start != end else [start]
        elapsed, run = timed(lambda keys=keys: run_export(instance, keys))
        run_seconds += elapsed
        if not run.success:
            report.problems.append(f"batched run {run.run_id} failed")
        report.batched_drafts += count_partitions(run)
    report.figures["batched_run"] = run_seconds


NOOP_PARTITIONS = "bench_dagster_alone"


def noop_job() -> Any:
    """A job shaped like export_drafts_job (two partitioned assets, single-run backfill) that
    does no work: what Dagster itself costs per partition on this instance."""
    partitions = dg.DynamicPartitionsDefinition(name=NOOP_PARTITIONS)

    # No annotations: Dagster cannot resolve postponed ones on functions defined in a function.
    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def noop_upstream(context):  # type: ignore[no-untyped-def]
        return dg.MaterializeResult(metadata={"draft_count": len(context.partition_keys)})

    @dg.asset(
        partitions_def=partitions,
        deps=[noop_upstream],
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def noop_export(context):  # type: ignore[no-untyped-def]
        return dg.MaterializeResult(metadata={"export_count": len(context.partition_keys)})

    return dg.Definitions(
        assets=[noop_upstream, noop_export],
        jobs=[dg.define_asset_job("noop_job", [noop_upstream, noop_export])],
    ).resolve_job_def("noop_job")


def dagster_alone(instance: Any, count: int, report: Report) -> None:
    """The no-op job over ``count`` partitions in one run on the benchmark's instance."""
    job = noop_job()
    keys = [f"noop-{n:05d}" for n in range(count)]
    instance.add_dynamic_partitions(NOOP_PARTITIONS, keys)
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    seconds, result = timed(
        lambda: job.execute_in_process(instance=instance, tags=tags, run_config=QUIET_RUN)
    )
    if not result.success:
        report.problems.append("the no-op job failed")
    report.figures["dagster_alone"] = seconds


def export_path_alone(
    env: BenchEnv, orgs: list[str], args: argparse.Namespace, report: Report
) -> None:
    """ExportService and the archive over the same resources as a run, without Dagster."""
    from orderflow_exports.application.archive import archive_outcome
    from orderflow_exports.application.export_service import ExportService
    from orderflow_exports.application.publishing import ExportSettings
    from orderflow_exports.defs.resources import (
        DatabaseResource,
        DropzoneResource,
        ExportStoreResource,
    )
    from orderflow_exports.domain.naming import DraftRef

    keys = insert(env, orgs, "V", args.service, args.lines)
    database, dropzone, export_store = DatabaseResource(), DropzoneResource(), ExportStoreResource()
    log = logging.getLogger("benchmarks.throughput")
    store = export_store.store()  # one S3 client, as in a run
    sessions = dropzone.connector()
    service = ExportService(
        drafts=database.drafts(),
        configs=database.connector_configs(),
        ledger=database.ledger(),
        dropzones=sessions,
        store=store,
        settings=ExportSettings(
            spool_dir=export_store.spool_path(), stale_temp_age=dropzone.stale_temp_age
        ),
        log=log,
    )
    refs = [DraftRef.from_partition_key(key) for key in keys]

    def export_all() -> None:
        for ref in refs:
            archive_outcome(store, ref, service.export(ref), log)

    seconds, _ = timed(export_all)
    sessions.close()
    database.engine.dispose()
    report.figures["export_path"] = seconds


def count_partitions(result: Any) -> int:
    """How many partitions of export_json the run materialized."""
    return sum(
        1
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey("export_json")
    )


def per_partition(
    env: BenchEnv, instance: Any, orgs: list[str], args: argparse.Namespace, report: Report
) -> None:
    keys = insert(env, orgs, "S", args.single, args.lines)
    add_partitions(instance, keys)
    started = time.perf_counter()
    for key in keys:
        if not run_export(instance, [key]).success:
            report.problems.append(f"single run of {key} failed")
    report.figures["single_run"] = time.perf_counter() - started


def per_partition_cli(
    env: BenchEnv, instance: Any, orgs: list[str], args: argparse.Namespace, report: Report
) -> None:
    keys = insert(env, orgs, "C", args.cli_runs, args.lines)
    add_partitions(instance, keys)
    config = env.root / "in_process.yaml"
    config.write_text(
        "execution: {config: {in_process: {}}}\n"
        "loggers: {console: {config: {log_level: WARNING}}}\n",
        encoding="utf-8",
    )
    dagster = Path(sys.executable).with_name("dagster")
    started = time.perf_counter()
    for key in keys:
        command = [
            str(dagster),
            "job",
            "execute",
            "-m",
            "orderflow_exports",
            "-j",
            "export_drafts_job",
            "-c",
            str(config),
            "--tags",
            json.dumps({"dagster/partition": key}),
        ]
        completed = subprocess.run(
            command, env=dict(os.environ), capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            report.problems.append(f"CLI run of {key} failed: {completed.stderr[-500:]}")
    report.figures["cli_run"] = time.perf_counter() - started


def check(
    env: BenchEnv,
    dropzones: Path,
    moto: Any,
    bucket: str,
    expected: int,
    report: Report,
    phase: str,
) -> None:
    """Every export so far: a SENT row, a file in its dropzone, an archived object."""
    counts = ledger_counts(env.engine)
    files = sum(len(os.listdir(p)) for p in dropzones.glob("*/outbox"))
    objects = moto.count_objects(bucket)
    if counts != {"SENT": expected} or files != expected or objects != expected:
        report.problems.append(
            f"after {phase}: expected {expected} exports; rows {counts}, dropzone files {files}, "
            f"archived objects {objects}"
        )


if __name__ == "__main__":
    sys.exit(main())
