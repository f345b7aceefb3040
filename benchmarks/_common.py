"""Shared setup of the benchmark scripts: a throwaway environment, local servers, timing helpers.

Every script builds its own environment under a temporary folder (SQLite database, Dagster
instance, dropzones, export store) through the same code the demo uses, measures a baseline in the
same run, and prints figures and ratios. Nothing here asserts a time: the scripts report and say
whether a target was met.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orderflow_exports_tests.support.network import free_port, wait_listening

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

# Fake credentials and no shared AWS config: a benchmark must never reach a real AWS account.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}

# Console logging of every INFO line would measure the terminal; the event log still gets them.
QUIET_RUN: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def quiet() -> None:
    """Silence the beta/preview warnings and chatty loggers that would bury the figures."""
    warnings.filterwarnings("ignore")
    for name in ("alembic", "botocore", "boto3", "paramiko", "orderflow_exports", "dagster"):
        logging.getLogger(name).setLevel(logging.WARNING)


def machine_line() -> str:
    """One line naming what the figures were measured on."""
    import dagster
    import pydantic
    import sqlalchemy

    return (
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"dagster {dagster.__version__}, pydantic {pydantic.VERSION}, "
        f"SQLAlchemy {sqlalchemy.__version__}, {platform.machine()}"
    )


# --- environment ----------------------------------------------------------------------------------


@dataclass
class BenchEnv:
    """One embedded environment: database, Dagster home, dropzones and export store."""

    root: Path
    home: Path
    database_url: str
    dropzones: Path
    store: str
    engine: Any

    def env_vars(self) -> dict[str, str]:
        """What the code location reads at run time (also handed to child processes)."""
        return {
            "DAGSTER_HOME": str(self.home),
            "ORDERFLOW_DATABASE_URL": self.database_url,
            "ORDERFLOW_EXPORT_STORE": self.store,
        }

    def local_connector(self, org_id: str) -> Any:
        from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
        from orderflow_exports.demo import local_connector

        config = local_connector(org_id, self.dropzones)
        SqlConnectorConfigs(self.engine).upsert(config)
        return config

    def upsert_connector(self, config: Any) -> None:
        from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

        SqlConnectorConfigs(self.engine).upsert(config)

    def instance(self) -> Any:
        """The Dagster instance of this home (embedded SQLite storage, as in the demo)."""
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))


def make_env(root: Path, *, database_url: str | None = None, store: str | None = None) -> BenchEnv:
    """Create (and export into ``os.environ``) an environment under ``root``."""
    from orderflow_exports.adapters.sql.engine import make_engine
    from orderflow_exports.demo import prepare_database

    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    # Embedded SQLite storage as in the demo; no telemetry banner or upload in a measurement.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = BenchEnv(
        root=root,
        home=home,
        database_url=database_url or f"sqlite:///{root / 'orderflow.db'}",
        dropzones=root / "dropzones",
        store=store or str(root / "store"),
        engine=None,
    )
    os.environ.update(env.env_vars())
    env.engine = make_engine(env.database_url)
    prepare_database(env.engine)
    return env


PG_ADMIN_URL = os.environ.get(
    "ORDERFLOW_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def temp_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (on the tests' server), dropped afterwards.

    Benchmarks create tables and drafts; they never get a database that holds anything else.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"ofbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def temp_root(prefix: str, keep: bool = False) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


# --- data -----------------------------------------------------------------------------------------


def insert_drafts(
    engine: Any, samples: Sequence[Any], *, description_pad: int = 0, batch: int = 5000
) -> None:
    """Like ``demo.insert_drafts`` (same rows), optionally with longer descriptions.

    ``description_pad`` appends that many characters to every line's description, so that a
    300k-line draft is ~100 MB as in the issue (the demo's lines are ~245 bytes of JSON each).
    """
    from sqlalchemy import insert

    from orderflow_exports.adapters.sql.tables import draft_order, draft_order_line
    from orderflow_exports.demo import draft_row, line_rows

    pad = (" — Lieferung in Kartons zu 100 Stück, bitte auf Europalette" * 10)[:description_pad]
    with engine.begin() as conn:
        conn.execute(insert(draft_order), [draft_row(s) for s in samples])
        for sample in samples:
            pending: list[dict[str, Any]] = []
            for row in line_rows(sample):
                if pad:
                    row["description"] += pad
                pending.append(row)
                if len(pending) >= batch:
                    conn.execute(insert(draft_order_line), pending)
                    pending = []
            if pending:
                conn.execute(insert(draft_order_line), pending)


def add_partitions(instance: Any, keys: Iterable[str]) -> None:
    from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME

    known = set(instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME, new)


def run_export(instance: Any, keys: Sequence[str], *, force: bool = False) -> Any:
    """``export_drafts_job`` in process over ``keys``: one run, as the sensor requests it."""
    from orderflow_exports import defs

    job = defs.resolve_job_def("export_drafts_job")
    run_config = {**QUIET_RUN, "ops": {"export_json": {"config": {"force": force}}}}
    if len(keys) == 1:
        return job.execute_in_process(
            instance=instance, partition_key=keys[0], run_config=run_config, raise_on_error=False
        )
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    return job.execute_in_process(
        instance=instance, tags=tags, run_config=run_config, raise_on_error=False
    )


def ledger_counts(engine: Any) -> dict[str, int]:
    """Rows of ``erp_export`` per status."""
    from sqlalchemy import func, select

    from orderflow_exports.adapters.sql.tables import erp_export

    query = select(erp_export.c.status, func.count()).group_by(erp_export.c.status)
    with engine.connect() as conn:
        return {status: count for status, count in conn.execute(query)}


# --- servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    """A moto S3 server in a child process (so it does not compete for this one's GIL)."""

    endpoint_url: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=FAKE_AWS_ENV["AWS_REGION"],
            aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def count_objects(self, bucket: str) -> int:
        paginator = self.client().get_paginator("list_objects_v2")
        return sum(page.get("KeyCount", 0) for page in paginator.paginate(Bucket=bucket))


@contextlib.contextmanager
def moto_server(log_file: Path) -> Iterator[MotoServer]:
    """Start ``python -m moto.server`` on a free loopback port; stopped by its PID afterwards."""
    os.environ.update(FAKE_AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    port = free_port()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        if not wait_listening(process, port, timeout=30.0):
            raise RuntimeError(f"moto server did not start; see {log_file}")
        yield MotoServer(endpoint_url=f"http://127.0.0.1:{port}", process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def new_bucket(server: MotoServer) -> str:
    name = f"bench-{uuid.uuid4().hex[:16]}"
    server.client().create_bucket(Bucket=name)
    return name


# --- timing ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn`` took, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def samples(fn: Callable[[], Any], rounds: int, warmup: int = 2) -> list[float]:
    """Seconds of ``rounds`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(rounds)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"
