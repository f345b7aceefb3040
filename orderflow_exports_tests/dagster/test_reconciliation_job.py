"""``reconcile_dropzones_job`` in process: per-org observations, fixes only when configured."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from orderflow_exports.domain.naming import DraftRef, export_filename, temp_filename
from orderflow_exports_tests.dagster.test_ack_sensor import unreachable_sftp
from orderflow_exports_tests.support.alert_servers import WebhookReceiver, webhook
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

__all__ = ["webhook"]  # fixture

HOUR = 3600


def old_file(folder: str, name: str, seconds: float) -> Path:
    path = Path(folder) / name
    path.write_bytes(b"{}")
    moment = datetime.now(UTC).timestamp() - seconds
    os.utime(path, (moment, moment))
    return path


def temp_of_no_row(org_id: str) -> str:
    ref = DraftRef(org_id, "D-crash")
    return temp_filename(export_filename(ref, datetime(2026, 1, 1, tzinfo=UTC), str(uuid.uuid4())))


def observations(env: OrderflowEnv, run_id: str) -> dict[str, dict[str, Any]]:
    records = env.instance.fetch_observations(dg.AssetKey("export_json"), limit=100).records
    found = {}
    for record in records:
        if record.run_id != run_id:
            continue
        observation = record.asset_observation
        assert observation is not None
        metadata = {k: v.value for k, v in observation.metadata.items()}
        found[str(metadata["org_id"])] = metadata
    return found


def run_job(env: OrderflowEnv, **config: Any) -> dg.ExecuteInProcessResult:
    from orderflow_exports import defs

    job = defs.resolve_job_def("reconcile_dropzones_job")
    run_config = {"resources": {"reconciliation": {"config": config}}} if config else None
    return job.execute_in_process(
        instance=env.instance, run_config=run_config, raise_on_error=False
    )


def test_the_job_reports_each_org_and_fails_when_one_cannot_be_checked(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    temp = old_file(acme.export_path, temp_of_no_row("acme"), 3 * HOUR)
    old_file(acme.export_path, "foreign.csv", HOUR)
    env.add_local_connector("initech")  # clean
    env.configs.upsert(unreachable_sftp("globex"))

    result = run_job(env)

    assert not result.success  # globex could not be checked: the run says so
    per_org = observations(env, result.run_id)
    assert set(per_org) == {"acme", "globex", "initech"}
    assert per_org["acme"]["findings_temp_left"] == 1
    assert per_org["acme"]["findings_unknown_file"] == 1
    assert per_org["acme"]["reconciled"] is True
    assert [f["class"] for f in per_org["acme"]["findings"]] == ["temp_left", "unknown_file"]
    assert per_org["initech"]["findings_total"] == 0
    assert per_org["globex"]["reconciled"] is False
    assert per_org["globex"]["findings_not_reconciled"] == 1
    assert temp.exists()  # read-only by default
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "org globex" in str(failure.event_specific_data)


def test_fix_mode_removes_the_reported_temp_file_and_outputs_the_findings(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    temp = old_file(acme.export_path, temp_of_no_row("acme"), 3 * HOUR)
    foreign = old_file(acme.export_path, "foreign.csv", HOUR)

    result = run_job(env, remove_stale_temps=True)

    assert result.success
    assert not temp.exists() and foreign.exists()
    findings = result.output_for_node("reconcile_dropzones")
    assert {(f.kind, f.fixed) for f in findings} == {
        ("temp_left", "removed"),
        ("unknown_file", None),
    }
    assert observations(env, result.run_id)["acme"]["findings_temp_left"] == 1


def test_the_schedule_runs_the_job_daily_by_default_and_follows_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orderflow_exports import defs
    from orderflow_exports.defs.reconciliation import RECONCILE_CRON_ENV, build_reconcile_schedule

    schedule = defs.resolve_schedule_def("reconcile_dropzones_schedule")
    assert schedule.job_name == "reconcile_dropzones_job"
    assert schedule.cron_schedule == "30 5 * * *"
    monkeypatch.setenv(RECONCILE_CRON_ENV, "0 */6 * * *")
    assert build_reconcile_schedule().cron_schedule == "0 */6 * * *"


def test_a_schedule_tick_requests_one_run_of_the_job() -> None:
    from orderflow_exports import defs

    schedule = defs.resolve_schedule_def("reconcile_dropzones_schedule")
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    [request] = data.run_requests or []
    assert request.job_name in (None, "reconcile_dropzones_job")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING


def test_findings_reach_the_webhook_once_each_and_a_new_one_is_told_next_time(
    orderflow_env: OrderflowEnv, webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERFLOW_ALERT_WEBHOOK_URL", webhook.url)
    env = orderflow_env
    acme = env.add_local_connector("acme")
    temp = temp_of_no_row("acme")
    old_file(acme.export_path, temp, 3 * HOUR)
    old_file(acme.export_path, "foreign.csv", HOUR)

    assert run_job(env).success
    [first] = webhook.posts
    assert first["kind"] == "RECONCILIATION" and first["org_id"] == "acme"
    assert sorted(first["details"]["findings"]) == sorted([temp, "foreign.csv"])
    assert len(first["event_keys"]) == 2

    assert run_job(env).success  # the same two mismatches: already told
    assert len(webhook.posts) == 1

    old_file(acme.export_path, "another.xml", HOUR)
    assert run_job(env).success
    assert len(webhook.posts) == 2
    second = webhook.posts[1]
    assert second["error_code"] == "unknown_file" and "another.xml" in second["title"]
