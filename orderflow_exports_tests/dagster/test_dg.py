"""``dg`` on the fixed layout: ``dg check defs``, ``dg list defs``, ``dg launch --partition``.

``dg launch`` (dagster-dg-cli 1.13.27) materializes in its own process, as ``dagster asset
materialize`` does: the run has no external job origin, so the daemon cannot retry it. The
README says which command CI uses for what.
"""

from __future__ import annotations

import json
import os

import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import VENV_BIN, run_command, subprocess_env

pytestmark = pytest.mark.slow


def _dg(env: OrderflowEnv, *args: str) -> tuple[int, str]:
    child = subprocess_env(env, VIRTUAL_ENV=str(VENV_BIN.parent), NO_COLOR="1")
    done = run_command([str(VENV_BIN / "dg"), *args], child, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_dg_checks_and_lists_the_definitions(orderflow_env: OrderflowEnv) -> None:
    code, out = _dg(orderflow_env, "check", "defs")
    assert code == 0, out
    assert "All definitions loaded successfully." in out
    code, out = _dg(orderflow_env, "list", "defs", "--json")
    assert code == 0, out
    for name in ("export_json", "export_drafts_job", "approved_drafts_sensor", "erp_ack_sensor"):
        assert name in out, out


def test_dg_launch_exports_one_partition(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key, other] = env.add_drafts(SampleDraft("acme", "D-1001"), SampleDraft("acme", "D-1002"))
    code, out = _dg(env, "launch", "--assets", "export_json", "--partition", key)
    assert code == 0, out[-4000:]
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT
    assert os.listdir(env.outbox("acme")) == [row.filename]
    assert env.exports(other) == []
    run = env.instance.get_run_by_id(row.dagster_run_id or "")
    assert run is not None and run.tags.get("dagster/partition") == key
    # Executed in the launching process: nothing the daemon could retry.
    assert run.remote_job_origin is None
    # An unknown partition is refused, and nothing is sent.
    code, out = _dg(env, "launch", "--assets", "export_json", "--partition", "acme:D-404")
    assert code != 0
    assert env.exports("acme:D-404") == []


def test_dagster_job_launch_queues_a_run_the_daemon_can_retry(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1001"))
    tags = json.dumps({"dagster/partition": key, "orderflow/dropzone_host": "local"})
    args = ["job", "launch", "-m", "orderflow_exports", "-j", "export_drafts_job", "--tags", tags]
    done = run_command([str(VENV_BIN / "dagster"), *args], subprocess_env(env), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [run] = env.instance.get_runs()
    # Queued for the daemon (no daemon here: nothing is sent yet), with an external origin.
    assert run.status.value == "QUEUED"
    assert run.remote_job_origin is not None
    assert run.tags["dagster/partition"] == key and run.tags["orderflow/dropzone_host"] == "local"
    assert env.exports(key) == []
