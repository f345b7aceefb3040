"""The real commands as subprocesses: `dagster job execute`, the demo, `orderflow-exports`."""

import os
import re
from pathlib import Path

import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import (
    REPO_ROOT,
    VENV_BIN,
    dagster_job_execute,
    orderflow_cli,
    run_command,
)

pytestmark = pytest.mark.slow


def test_dagster_job_execute_exports_one_partition(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key, other] = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("acme", "D-2"))
    done = dagster_job_execute(env, "export_drafts_job", {"dagster/partition": key})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT
    assert os.listdir(env.outbox("acme")) == [row.filename]
    assert Path(row.storage_key).read_bytes() == Path(row.dropzone_path).read_bytes()
    assert env.exports(other) == []  # only the tagged partition ran


def test_demo_command_exports_and_is_idempotent(tmp_path: Path) -> None:
    child = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"), PYTHONWARNINGS="ignore")
    child.pop("ORDERFLOW_DATABASE_URL", None)
    child.pop("ORDERFLOW_EXPORT_STORE", None)
    (tmp_path / "home").mkdir()
    first = run_command([str(VENV_BIN / "orderflow-exports"), "demo"], child)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    outboxes = tmp_path / "home" / "orderflow" / "dropzones"
    files = sorted(p.name for p in outboxes.glob("*/outbox/*.json"))
    assert len(files) == 5  # the DRAFT-status draft is not exported
    assert any(name.startswith("acme_D-1002_") for name in files)
    assert first.stdout.count(" SENT ") == 5
    archived = sorted(p.name for p in (tmp_path / "home/orderflow/store").rglob("*.json"))
    assert len(archived) == 5
    second = run_command([str(VENV_BIN / "orderflow-exports"), "demo"], child)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in outboxes.glob("*/outbox/*.json")) == files
    assert "not sending it again" in second.stdout + second.stderr
    assert second.stdout.count(" SENT ") == 5


def test_exports_list_shows_failures_with_the_retry_command(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme", export_path=str(env.dropzones / "missing"))
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert not env.run_export([key]).success
    listed = orderflow_cli(env, "exports", "list", "--status", "FAILED")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^acme\s+D-1\s+1\s+FAILED\s", listed.stdout, re.MULTILINE)
    assert "CONFIG: export folder" in listed.stdout
    assert (
        "dagster job execute -m orderflow_exports -j export_drafts_job "
        '--tags \'{"dagster/partition": "acme:D-1"}\'' in listed.stdout
    )
    assert "/assets/export_json?view=partitions&partition=acme:D-1" in listed.stdout
    assert "no exports" in orderflow_cli(env, "exports", "list", "--status", "ACKED").stdout


def test_connectors_cli_round_trip_and_clear_errors(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    saved = orderflow_cli(
        env,
        "connectors",
        "set",
        "--org",
        "globex",
        "--transport",
        "sftp",
        "--host",
        "h",
        "--username",
        "u",
        "--host-key",
        "SHA256:abc",
        "--private-key-ref",
        "env:GLOBEX_KEY",
        "--export-path",
        "/in",
        "--ack-path",
        "/out",
    )
    assert saved.returncode == 0, saved.stderr
    listed = orderflow_cli(env, "connectors", "list")
    assert "sftp://u@h:22" in listed.stdout and "env:GLOBEX_KEY" in listed.stdout
    refused = orderflow_cli(
        env,
        "connectors",
        "set",
        "--org",
        "../x",
        "--transport",
        "local",
        "--export-path",
        "/a",
        "--ack-path",
        "/b",
    )
    assert refused.returncode == 2 and "not allowed" in refused.stderr
    bad_secret = orderflow_cli(
        env,
        "connectors",
        "set",
        "--org",
        "x",
        "--transport",
        "sftp",
        "--host",
        "h",
        "--username",
        "u",
        "--host-key",
        "SHA256:abc",
        "--password-ref",
        "hunter2",
        "--export-path",
        "/a",
        "--ack-path",
        "/b",
    )
    assert bad_secret.returncode == 2 and "env:" in bad_secret.stderr
    assert "hunter2" not in orderflow_cli(env, "connectors", "list").stdout


def test_db_upgrade_on_a_fresh_database(tmp_path: Path) -> None:
    child = dict(os.environ, ORDERFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}")
    done = run_command([str(VENV_BIN / "orderflow-exports"), "db", "upgrade"], child)
    assert done.returncode == 0 and "schema up to date" in done.stdout
    assert REPO_ROOT.is_dir()
