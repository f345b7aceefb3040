"""Production on PostgreSQL: the repo's dagster.yaml as the instance, our tables through psycopg 3.

Each test gets two fresh databases, created and dropped here: one for the Dagster instance (loaded
from a temporary DAGSTER_HOME holding a copy of the top-level ``dagster.yaml``, with the
``DAGSTER_PG_*`` variables pointing at it) and one for ``erp_export`` & co
(``postgresql+psycopg://``). Two databases, as in production: both sides keep an
``alembic_version`` table.

The ledger's own races (four threads inserting, stale compare-and-set) are in
``adapters/test_sql_ledger.py``; here two real runs (two ``dagster job execute`` processes) race
for one draft. They are made to meet deterministically, not by timing: the test holds
``LOCK TABLE erp_export IN SHARE MODE`` (reads pass, writes wait), waits until both runs are
blocked on it at the same write, and only then lets them go.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.demo import SampleDraft, prepare_database
from orderflow_exports.domain.naming import DraftRef, export_filename
from orderflow_exports.domain.records import NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import (
    IN_PROCESS_CONFIG,
    REPO_ROOT,
    VENV_BIN,
    subprocess_env,
)

PRODUCTION_DAGSTER_YAML = REPO_ROOT / "dagster.yaml"
RACE_TAG = "orderflow_test/racer"


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg's own connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def dagster_pg_database(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty database for the Dagster instance's storage; dropped afterwards."""
    name = f"oft_dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _dagster_home(tmp_path: Path, dagster_yaml: str) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml)
    return home


def _point_dagster_pg_env(
    monkeypatch: pytest.MonkeyPatch, admin_url: str, db_name: str, home: Path
) -> None:
    url = make_url(admin_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", db_name)


@pytest.fixture
def pg_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_admin_url: str,
    postgres_database: str,
    dagster_pg_database: str,
) -> Iterator[OrderflowEnv]:
    """The production instance config on PostgreSQL, our tables on PostgreSQL, local folders."""
    home = _dagster_home(tmp_path, PRODUCTION_DAGSTER_YAML.read_text())
    _point_dagster_pg_env(monkeypatch, postgres_admin_url, dagster_pg_database, home)
    store_root = tmp_path / "store"
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", postgres_database)
    monkeypatch.setenv("ORDERFLOW_EXPORT_STORE", str(store_root))
    engine = make_engine(postgres_database)
    prepare_database(engine)
    try:
        with dg.DagsterInstance.get() as instance:
            yield OrderflowEnv(
                home=home,
                database_url=postgres_database,
                engine=engine,
                instance=instance,
                dropzones=tmp_path / "dropzones",
                store_root=store_root,
            )
    finally:
        engine.dispose()


def _storage_engines(instance: dg.DagsterInstance) -> dict[str, Engine]:
    return {
        "runs": instance.run_storage._engine,  # type: ignore[attr-defined]
        "events": instance.event_log_storage._engine,  # type: ignore[attr-defined]
        "schedules": instance.schedule_storage._engine,  # type: ignore[attr-defined,union-attr]
    }


def test_production_config_pins_psycopg2_for_dagsters_storage() -> None:
    config = yaml.safe_load(PRODUCTION_DAGSTER_YAML.read_text())
    postgres_db = config["storage"]["postgres"]["postgres_db"]
    assert postgres_db["scheme"] == "postgresql+psycopg2"
    # Everything that differs per deployment comes from the environment.
    for field in ("hostname", "port", "username", "password", "db_name"):
        assert set(postgres_db[field]) == {"env"}, field


def test_production_instance_and_our_tables_on_postgresql_run_an_export(
    pg_env: OrderflowEnv, dagster_pg_database: str, postgres_admin_url: str
) -> None:
    env = pg_env
    instance = env.instance
    # The instance under test is the file people deploy, not a test variant of it.
    assert (env.home / "dagster.yaml").read_text() == PRODUCTION_DAGSTER_YAML.read_text()
    # The production config loaded: PostgreSQL storage through psycopg2, retries, monitoring.
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    for name, storage_engine in _storage_engines(instance).items():
        assert storage_engine.dialect.driver == "psycopg2", name
        assert storage_engine.url.database == dagster_pg_database, name
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert instance.run_monitoring_enabled
    # Our side: psycopg 3.
    assert env.engine.dialect.driver == "psycopg"

    env.add_local_connector("acme")
    env.add_local_connector("globex")
    keys = env.add_drafts(SampleDraft("acme", "D-1", lines=3), SampleDraft("globex", "G-1"))
    result = env.run_export(keys)
    assert result.success
    for key in keys:
        [row] = env.exports(key)
        assert row.status is ExportStatus.SENT and row.dagster_run_id == result.run_id
        assert Path(row.storage_key).read_bytes() == Path(row.dropzone_path).read_bytes()
        assert row.created_at.tzinfo is not None  # timestamptz round trip
    # Re-running is idempotent on PostgreSQL too.
    assert env.run_export(keys).success
    assert [len(env.exports(key)) for key in keys] == [1, 1]

    # The run, its events and the dynamic partitions really live in the instance's database.
    dagster_db = make_url(postgres_admin_url).set(database=dagster_pg_database)
    with psycopg.connect(_libpq(dagster_db.render_as_string(hide_password=False))) as conn:
        [(status,)] = conn.execute(
            "SELECT status FROM runs WHERE run_id = %s", (result.run_id,)
        ).fetchall()
        [(events,)] = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (result.run_id, "ASSET_MATERIALIZATION"),
        ).fetchall()
        partitions = [
            key for (key,) in conn.execute("SELECT partition FROM dynamic_partitions").fetchall()
        ]
    assert status == "SUCCESS"
    assert events == 4  # approved_drafts and export_json, two partitions each
    assert sorted(partitions) == sorted(keys)


def test_plain_postgresql_scheme_breaks_runs_which_is_why_the_config_pins_psycopg2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_admin_url: str,
    dagster_pg_database: str,
) -> None:
    """FACTS.md (Installing): with psycopg 3 installed, ``postgresql://`` picks it, and every run
    fails at ``NOTIFY run_events, $1``. If this test starts failing, the fact has changed: update
    FACTS.md and reconsider the pin."""
    config = PRODUCTION_DAGSTER_YAML.read_text()
    assert "scheme: postgresql+psycopg2" in config
    home = _dagster_home(
        tmp_path, config.replace("scheme: postgresql+psycopg2", "scheme: postgresql")
    )
    _point_dagster_pg_env(monkeypatch, postgres_admin_url, dagster_pg_database, home)

    @dg.op
    def noop() -> None:
        return None

    @dg.job
    def one_op() -> None:
        noop()

    with dg.DagsterInstance.get() as instance:
        assert instance.run_storage._engine.dialect.driver == "psycopg"  # type: ignore[attr-defined]
        with pytest.raises(Exception, match=r"NOTIFY run_events"):
            one_op.execute_in_process(instance=instance, raise_on_error=False)


# --- two runs at the same moment ----------------------------------------------------------------


def _start_export(env: OrderflowEnv, key: str, racer: str) -> subprocess.Popen[str]:
    """``dagster job execute`` for one partition, as CI runs it, without waiting for it."""
    config = env.home / "in_process.yaml"
    config.write_text(IN_PROCESS_CONFIG)
    tags = {"dagster/partition": key, RACE_TAG: racer}
    args = [str(VENV_BIN / "dagster"), "job", "execute", "-m", "orderflow_exports"]
    args += ["-j", "export_drafts_job", "-c", str(config), "--tags", json.dumps(tags)]
    return subprocess.Popen(
        args,
        env=subprocess_env(env),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _waiting_on_erp_export(conn: psycopg.Connection[Any]) -> int:
    """How many other sessions wait for a lock on erp_export (our SHARE lock)."""
    [(count,)] = conn.execute(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted "
        "AND relation = 'erp_export'::regclass AND pid <> pg_backend_pid()"
    ).fetchall()
    return int(count)


def _race(env: OrderflowEnv, key: str) -> dict[str, tuple[int, str]]:
    """Two export runs of ``key`` released together at their first write to erp_export.

    Returns ``{racer: (exit code, output)}``.
    """
    with psycopg.connect(_libpq(env.database_url)) as barrier:
        barrier.execute("LOCK TABLE erp_export IN SHARE MODE")
        racers = {name: _start_export(env, key, name) for name in ("A", "B")}
        try:
            # Not a timing assumption: a bound on how long two runs may take to get here.
            deadline = time.monotonic() + 300
            while _waiting_on_erp_export(barrier) < 2:
                exited = {n: p for n, p in racers.items() if p.poll() is not None}
                if exited or time.monotonic() > deadline:
                    outputs = {n: p.communicate()[0] for n, p in exited.items()}
                    pytest.fail(f"the runs never met at the barrier: {outputs}")
                time.sleep(0.05)
        except BaseException:
            for process in racers.values():
                process.kill()
                process.wait()
            raise
        barrier.rollback()  # releases the lock: both writes go ahead at once
    results = {}
    for name, process in racers.items():
        output, _ = process.communicate(timeout=300)
        results[name] = (process.returncode, output)
    return results


def _runs_by_racer(instance: dg.DagsterInstance) -> dict[str, dg.DagsterRun]:
    runs = instance.get_runs(dg.RunsFilter(job_name="export_drafts_job"))
    return {run.tags[RACE_TAG]: run for run in runs if RACE_TAG in run.tags}


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return [str(record.dagster_event.event_specific_data) for record in records]  # type: ignore[union-attr]


def _winner_and_loser(env: OrderflowEnv, results: dict[str, tuple[int, str]]) -> tuple[str, str]:
    codes = {name: code for name, (code, _) in results.items()}
    assert sorted(codes.values()) == [0, 1], results
    winner = next(name for name, code in codes.items() if code == 0)
    loser = next(name for name, code in codes.items() if code == 1)
    runs = _runs_by_racer(env.instance)
    assert runs[winner].status is dg.DagsterRunStatus.SUCCESS
    assert runs[loser].status is dg.DagsterRunStatus.FAILURE
    [failure] = _step_failures(env.instance, runs[loser].run_id)
    assert "already in flight" in failure and "not sending it twice" in failure
    assert "already in flight" in results[loser][1]
    return runs[winner].run_id, runs[loser].run_id


def _active_rows(env: OrderflowEnv) -> int:
    with psycopg.connect(_libpq(env.database_url)) as conn:
        [(count,)] = conn.execute(
            "SELECT count(*) FROM erp_export WHERE status IN ('PENDING', 'SENT')"
        ).fetchall()
    return int(count)


@pytest.mark.slow
def test_two_runs_exporting_one_draft_at_once_send_it_once(pg_env: OrderflowEnv) -> None:
    env = pg_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    # Both runs read "no export yet", build their file and block on the INSERT of their PENDING
    # row; released together, the partial unique index lets exactly one in.
    results = _race(env, key)
    winner_run, loser_run = _winner_and_loser(env, results)
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT and row.attempt == 1
    assert row.dagster_run_id == winner_run
    assert _active_rows(env) == 1
    assert sorted(p.name for p in env.outbox("acme").iterdir()) == [row.filename]
    assert [p.name for p in Path(row.storage_key).parent.iterdir()] == [f"{row.id}.json"]


_AUDIT_SQL = """
CREATE TABLE test_erp_export_audit (
    n bigserial PRIMARY KEY,
    op text NOT NULL,
    export_id text NOT NULL,
    old_status text,
    new_status text NOT NULL
);
CREATE FUNCTION test_audit_erp_export() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_erp_export_audit (op, export_id, old_status, new_status)
    VALUES (TG_OP, NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER test_audit AFTER INSERT OR UPDATE ON erp_export
    FOR EACH ROW EXECUTE FUNCTION test_audit_erp_export();
"""


@pytest.mark.slow
def test_two_runs_recovering_one_interrupted_export_transition_it_once(
    pg_env: OrderflowEnv,
) -> None:
    """A stale compare-and-set at the run level changes nothing.

    A dead run left a PENDING export whose file never reached the dropzone. Two runs find it at
    the same moment and both try PENDING -> FAILED (INTERRUPTED); a trigger records every row
    change that really happens. Exactly one transition happens (the second run's
    compare-and-set finds FAILED and updates nothing), exactly one new attempt is made, and the
    other run fails with "already in flight".
    """
    env = pg_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    dead_run = env.instance.add_run(
        dg.DagsterRun(job_name="export_drafts_job", status=dg.DagsterRunStatus.FAILURE)
    )
    ref = DraftRef("acme", "D-1")
    created_at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    interrupted_id = str(uuid.uuid4())
    filename = export_filename(ref, created_at, interrupted_id)
    env.ledger.create_pending(
        NewExport(
            id=interrupted_id,
            ref=ref,
            attempt=1,
            filename=filename,
            dropzone_path=str(env.outbox("acme") / filename),
            storage_key=str(env.store_root / "exports" / "acme" / "D-1" / f"{interrupted_id}.json"),
            content_sha256="0" * 64,
            byte_size=1,
            line_count=1,
            forced=False,
            dagster_run_id=dead_run.run_id,
            created_at=created_at,
        )
    )
    with psycopg.connect(_libpq(env.database_url), autocommit=True) as conn:
        conn.execute(_AUDIT_SQL)

    # Both runs block on their UPDATE of the interrupted row (reads pass the SHARE lock).
    results = _race(env, key)
    winner_run, _ = _winner_and_loser(env, results)

    with psycopg.connect(_libpq(env.database_url)) as conn:
        audit = conn.execute(
            "SELECT op, export_id, old_status, new_status FROM test_erp_export_audit ORDER BY n"
        ).fetchall()
    interrupted, new = env.exports(key)
    assert interrupted.id == interrupted_id
    assert interrupted.status is ExportStatus.FAILED and interrupted.error_code == "INTERRUPTED"
    assert new.status is ExportStatus.SENT and new.attempt == 2
    assert new.dagster_run_id == winner_run
    assert audit == [
        # The winner takes the rename right from the dead run (so it can never rename), once.
        ("UPDATE", interrupted_id, "PENDING", "PENDING"),
        ("UPDATE", interrupted_id, "PENDING", "FAILED"),  # once, not once per run
        ("INSERT", new.id, None, "PENDING"),
        ("UPDATE", new.id, "PENDING", "PENDING"),  # rename_started_at, just before the rename
        ("UPDATE", new.id, "PENDING", "SENT"),
    ]
    assert _active_rows(env) == 1
    assert sorted(p.name for p in env.outbox("acme").iterdir()) == [new.filename]
