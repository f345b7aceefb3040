"""Run retries as production configures them (``dagster.yaml``), and the real daemon doing one.

Production's choice: ``run_retries`` with ``retry_on_asset_or_op_failure: true``, and a run that
fails for a permanent reason tags itself ``dagster/retry_on_asset_or_op_failure=false``. So a
transient failure that outlasts the in-run RetryPolicy (or a dead run process) gets a new run,
while a refused draft or a wrong host key is not tried again for nothing.

The daemon test: ``approved_drafts_sensor`` finds a new draft and launches its run; the dropzone
is unreachable for every attempt of that run (the injected outage of ``support/fault_injection``:
a local folder cannot refuse a connection), so the run fails after its in-run retries; the daemon
retries the run, the dropzone is back, and the retry sends the file, once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orderflow_exports.defs.assets import EXPORT_RETRY_POLICY, NO_RUN_RETRY_TAGS
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.dagster_services import (
    PRODUCTION_INSTANCE_CONFIG,
    module_orderflow_env,
    start_daemon,
    wait_for,
)
from orderflow_exports_tests.support.fault_injection import OUTAGE_SWITCH_ENV, set_outage
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

WILL_RETRY_TAG = "dagster/will_retry"
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
DAEMON_DEADLINE_SECONDS = 240  # bounds a hang; the whole story takes ~60 s here


@pytest.fixture
def production_like_env(tmp_path: Path) -> Iterator[OrderflowEnv]:
    """An embedded environment whose instance config is production's (SQLite storage)."""
    with module_orderflow_env(tmp_path) as env:
        yield env


def test_production_instance_config_is_valid_and_retries_runs(
    production_like_env: OrderflowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for name in ("HOST", "PORT", "USER", "PASSWORD", "DB"):
        monkeypatch.setenv(f"DAGSTER_PG_{name}", "5432" if name == "PORT" else "x")
    # The file as shipped, PostgreSQL storage included, passes Dagster's own validation.
    config, _ = dagster_instance_config(str(PRODUCTION_INSTANCE_CONFIG.parent))
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    raw = yaml.safe_load(PRODUCTION_INSTANCE_CONFIG.read_text())
    assert raw["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": True,
    }
    instance = production_like_env.instance
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert instance.run_retries_retry_on_asset_or_op_failure
    limits = instance.get_concurrency_config().run_queue_config
    assert limits is not None and limits.max_concurrent_runs == 8
    [host_limit] = limits.tag_concurrency_limits
    assert host_limit["key"] == "orderflow/dropzone_host" and host_limit["limit"] == 2


def test_permanent_failure_is_not_retried_but_a_dead_run_is(
    production_like_env: OrderflowEnv,
) -> None:
    env = production_like_env
    env.add_local_connector("acme", export_path=str(env.dropzones / "missing"))
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    result = env.run_export([key])
    assert not result.success
    run = env.instance.get_run_by_id(result.run_id)
    assert run is not None
    assert run.tags[RETRY_ON_FAILURE_TAG] == NO_RUN_RETRY_TAGS[RETRY_ON_FAILURE_TAG] == "false"
    assert run.tags[WILL_RETRY_TAG] == "false"  # what the daemon reads

    # A run whose process died is reported failed without a step failure: it is retried.
    dead = dg.DagsterRun(job_name="export_drafts_job", status=dg.DagsterRunStatus.STARTED)
    env.instance.add_run(dead)
    env.instance.report_run_failed(dead, "run worker exited with -9")
    reported = env.instance.get_run_by_id(dead.run_id)
    assert reported is not None and reported.tags[WILL_RETRY_TAG] == "true"


def _export_runs(instance: dg.DagsterInstance) -> Sequence[dg.DagsterRun]:
    return instance.get_runs(dg.RunsFilter(job_name="export_drafts_job"))


def _retried(instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, dg.DagsterRun] | None:
    """The sensor's run and its retry, once the retry has finished."""
    runs = _export_runs(instance)
    retries = [r for r in runs if r.parent_run_id is not None]
    if not retries or not retries[0].is_finished:
        return None
    original = instance.get_run_by_id(retries[0].parent_run_id or "")
    assert original is not None
    return original, retries[0]


@pytest.mark.slow
def test_daemon_retries_a_sensor_run_that_failed_transiently(
    production_like_env: OrderflowEnv, tmp_path: Path
) -> None:
    env = production_like_env
    env.add_local_connector("acme")
    key = "acme:D-1"
    env.add_drafts(SampleDraft("acme", "D-1", lines=3), partitions=False)  # the sensor adds it
    # Every attempt of the first run meets the outage; the retry run does not.
    attempts_per_run = EXPORT_RETRY_POLICY.max_retries + 1
    switch = tmp_path / "outage"
    set_outage(switch, failures=attempts_per_run)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "orderflow_exports_tests.support.fault_injection",
                            "location_name": "orderflow_exports",
                        }
                    }
                ]
            }
        )
    )

    daemon = start_daemon(env, tmp_path, workspace, **{OUTAGE_SWITCH_ENV: str(switch)})
    try:
        original, retry = wait_for(
            "the sensor's run to fail and its retry to finish",
            lambda: _retried(env.instance),
            timeout=DAEMON_DEADLINE_SECONDS,
            alive=daemon.dead,
        )
    finally:
        daemon.stop()
    logs = daemon.log_tail()

    # The first run was the sensor's, and failed transiently after its in-run retries.
    assert original.tags.get("dagster/sensor_name") == "approved_drafts_sensor", logs
    assert original.tags.get("dagster/partition") == key
    assert original.status is dg.DagsterRunStatus.FAILURE
    assert original.tags.get("dagster/failure_reason") == "STEP_FAILURE"
    assert original.tags.get(WILL_RETRY_TAG) == "true"
    assert RETRY_ON_FAILURE_TAG not in original.tags  # transient: it did not opt out
    step_retries = env.instance.all_logs(
        original.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    )
    assert len(step_retries) == EXPORT_RETRY_POLICY.max_retries
    [failure] = env.instance.all_logs(original.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert failure.dagster_event is not None
    assert "CONNECTION (transient)" in str(failure.dagster_event.event_specific_data)

    # The daemon's retry: same partition, succeeded.
    assert retry.status is dg.DagsterRunStatus.SUCCESS, logs
    assert retry.tags.get("dagster/retry_number") == "1"
    assert retry.root_run_id == original.run_id
    assert retry.tags.get("dagster/partition") == key
    assert [r.run_id for r in _export_runs(env.instance)] == [retry.run_id, original.run_id]

    # One FAILED row per attempt that met the outage, then one SENT row; one file.
    rows = env.exports(key)
    assert [r.status for r in rows] == [ExportStatus.FAILED] * attempts_per_run + [
        ExportStatus.SENT
    ]
    assert {r.error_code for r in rows[:-1]} == {"CONNECTION"}
    assert {r.dagster_run_id for r in rows[:-1]} == {original.run_id}
    sent = rows[-1]
    assert sent.dagster_run_id == retry.run_id and sent.attempt == attempts_per_run + 1
    assert os.listdir(env.outbox("acme")) == [sent.filename]
    assert Path(sent.storage_key).read_bytes() == (env.outbox("acme") / sent.filename).read_bytes()
    assert switch.read_text() == "0"  # the outage was used up by the first run, exactly
