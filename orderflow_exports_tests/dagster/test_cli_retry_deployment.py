"""``exports retry`` against a real webserver and daemon: the run is the deployment's.

The retried draft failed first (its export folder was missing: a permanent CONFIG failure, so
nothing retries it by itself). ``exports retry --wait`` queues a run through the webserver's
GraphQL API; the daemon launches it, it shows in the run list with the per-host tag, and it
sends one file. For a second draft the retry run meets an injected outage on every in-run
attempt (``support/fault_injection``), fails transiently, and the daemon's run retries make a
new run that sends it. A SENT draft is refused without ``--force``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from orderflow_exports.application.retry import RETRIED_BY_TAG, RetryRefused
from orderflow_exports.defs.assets import EXPORT_RETRY_POLICY
from orderflow_exports.demo import SampleDraft, local_connector
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports.operations.retry import retry_draft
from orderflow_exports_tests.dagster.test_cli import assert_one_line_refusal, run_cli
from orderflow_exports_tests.support.dagster_services import (
    DagsterService,
    graphql,
    module_orderflow_env,
    start_daemon,
    start_webserver,
    wait_for,
)
from orderflow_exports_tests.support.fault_injection import OUTAGE_SWITCH_ENV, set_outage
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

pytestmark = pytest.mark.slow
WAIT_SECONDS = "300"  # bounds a hang; a retry story takes ~60 s here

_SENSOR = """
query($s: SensorSelector!) {
  sensorOrError(sensorSelector: $s) {
    ... on Sensor { jobOriginId sensorState { selectorId } }
  }
}
"""
_STOP_SENSOR = """
mutation($origin: String, $selector: String) {
  stopSensor(jobOriginId: $origin, jobSelectorId: $selector) { __typename }
}
"""
_RUNS = """
query {
  runsOrError(filter: {pipelineName: "export_drafts_job"}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


def _stop_approvals_sensor(webserver: DagsterService) -> None:
    """The test launches every run itself: the sensor would request the drafts too."""
    [location] = graphql(
        webserver,
        "query { repositoriesOrError { ... on RepositoryConnection "
        "{ nodes { name location { name } } } } }",
    )["repositoriesOrError"]["nodes"]
    selector = {
        "repositoryLocationName": location["location"]["name"],
        "repositoryName": location["name"],
        "sensorName": "approved_drafts_sensor",
    }
    sensor = graphql(webserver, _SENSOR, {"s": selector})["sensorOrError"]
    stopped = graphql(
        webserver,
        _STOP_SENSOR,
        {"origin": sensor["jobOriginId"], "selector": sensor["sensorState"]["selectorId"]},
    )
    assert stopped["stopSensor"]["__typename"] == "StopSensorMutationResult", stopped


def _runs(webserver: DagsterService) -> dict[str, dict[str, object]]:
    results = graphql(webserver, _RUNS)["runsOrError"]["results"]
    return {
        r["runId"]: {"status": r["status"], **{t["key"]: t["value"] for t in r["tags"]}}
        for r in results
    }


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[OrderflowEnv, DagsterService, Path]]:
    with module_orderflow_env(tmp_path) as env:
        switch = tmp_path / "outage"
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
        extra = {OUTAGE_SWITCH_ENV: str(switch)}
        webserver = start_webserver(env, tmp_path, workspace, **extra)
        daemon = None
        try:
            _stop_approvals_sensor(webserver)
            daemon = start_daemon(env, tmp_path, workspace, **extra)
            yield env, webserver, switch
        finally:
            if daemon is not None:
                daemon.stop()
            webserver.stop()


def test_retry_goes_through_the_deployment_and_its_run_retries(
    deployment: tuple[OrderflowEnv, DagsterService, Path],
) -> None:
    env, webserver, switch = deployment
    assert webserver.url is not None
    good = local_connector("acme", env.dropzones)
    env.configs.upsert(replace(good, export_path=str(env.dropzones / "missing")))
    keys = env.add_drafts(SampleDraft("acme", "D-1", lines=2), SampleDraft("acme", "D-2"))
    for key in keys:
        assert not env.run_export([key]).success
        [failed] = env.exports(key)
        assert failed.status is ExportStatus.FAILED and failed.error_code == "CONFIG"
    env.configs.upsert(good)  # the cause is fixed; now a person retries

    # One FAILED draft: one queued run, one new SENT row, one file.
    code, out, err = run_cli(
        "exports", "retry", "--org", "acme", "--draft", "D-1", "--wait",
        "--wait-timeout", WAIT_SECONDS, "--url", webserver.url,
    )  # fmt: skip
    assert code == 0, out + err + webserver.log_tail()
    rows = env.exports("acme:D-1")
    assert [r.status for r in rows] == [ExportStatus.FAILED, ExportStatus.SENT]
    sent = rows[-1]
    assert os.listdir(env.outbox("acme")) == [sent.filename]
    assert f"acme:D-1: SUCCESS (runs {sent.dagster_run_id});" in out
    assert f"attempt 2 SENT file {sent.filename}" in out
    runs = _runs(webserver)
    run = runs[sent.dagster_run_id or ""]  # the daemon launched it: in the UI's run list
    assert run["status"] == "SUCCESS"
    assert run["dagster/partition"] == "acme:D-1"
    assert run[DROPZONE_HOST_TAG] == "local"
    assert run[RETRIED_BY_TAG] == "orderflow-exports"
    assert "dagster/sensor_name" not in run

    # Sent: refused without --force, nothing launched.
    code, out, err = run_cli(
        "exports", "retry", "--org", "acme", "--draft", "D-1", "--url", webserver.url
    )
    assert_one_line_refusal(code, err, "attempt 2 is SENT")
    assert "--force" in err and out == ""
    assert len(_runs(webserver)) == len(runs)

    # A transient failure of the retry run: the daemon retries the run, which sends the file.
    attempts_per_run = EXPORT_RETRY_POLICY.max_retries + 1
    set_outage(switch, failures=attempts_per_run)
    code, out, err = run_cli(
        "exports", "retry", "--status", "FAILED", "--org", "acme", "--wait",
        "--wait-timeout", WAIT_SECONDS, "--url", webserver.url,
    )  # fmt: skip
    assert code == 0, out + err + webserver.log_tail()
    rows = env.exports("acme:D-2")
    assert [r.status for r in rows] == (
        [ExportStatus.FAILED] * (1 + attempts_per_run) + [ExportStatus.SENT]
    )
    assert {r.error_code for r in rows[1:-1]} == {"CONNECTION"}
    first_run, retry_run = rows[1].dagster_run_id, rows[-1].dagster_run_id
    assert first_run != retry_run
    assert f"acme:D-2: SUCCESS (runs {first_run} → {retry_run});" in out
    runs = _runs(webserver)
    assert runs[first_run or ""]["status"] == "FAILURE"
    assert runs[first_run or ""]["dagster/will_retry"] == "true"
    assert runs[retry_run or ""]["dagster/parent_run_id"] == first_run
    assert runs[retry_run or ""][DROPZONE_HOST_TAG] == "local"  # the limit holds for the retry
    assert sorted(os.listdir(env.outbox("acme"))) == sorted([sent.filename, rows[-1].filename])
    assert switch.read_text() == "0"

    # The Python API (for the OrderFlow app): refused over SENT, forced re-send queued with the
    # force config, which supersedes the SENT attempt.
    with pytest.raises(RetryRefused, match="is SENT"):
        retry_draft("acme", "D-1", url=webserver.url)
    launch = retry_draft(
        "acme", "D-1", url=webserver.url, force=True, wait=True, timeout=float(WAIT_SECONDS)
    )
    assert launch.final is not None and launch.final.status == "SUCCESS"
    before, after = env.exports("acme:D-1")[-2:]
    assert before.id == sent.id and before.error_code == "SUPERSEDED"
    assert after.status is ExportStatus.SENT and after.forced
    assert after.dagster_run_id == launch.run_id

    # The UI's one path for drafts needing action: launching resend_drafts_needing_action_job
    # (as the Launchpad does) queues a run for exactly the drafts the ERP rejected or never
    # answered; a SENT draft and a draft failed for another reason are left alone.
    keys = env.add_drafts(
        SampleDraft("acme", "D-3"), SampleDraft("acme", "D-4"), SampleDraft("acme", "D-5")
    )
    for key in keys:
        assert env.run_export([key]).success
    rejected, silent, untouched = (env.exports(key)[-1] for key in keys)
    now = datetime.now(UTC)
    for record, code in ((rejected, "ERP_REJECTED"), (silent, "ACK_TIMEOUT")):
        assert env.ledger.mark_failed(
            record.id, expected=ExportStatus.SENT, code=code, message="from the ERP", at=now
        )
    rows_before = {key: len(env.exports(key)) for key in ("acme:D-1", "acme:D-2", keys[2])}
    files_before = set(os.listdir(env.outbox("acme")))
    resend_run = _launch_resend_job(webserver, org_id="acme")
    wait_for(
        "the resend job's run",
        lambda: _run_status(webserver, resend_run) in ("SUCCESS", "FAILURE"),
        timeout=float(WAIT_SECONDS),
    )
    assert _run_status(webserver, resend_run) == "SUCCESS", webserver.log_tail()

    def resent() -> bool:
        return all(
            env.exports(key)[-1].status is ExportStatus.SENT and len(env.exports(key)) == 2
            for key in keys[:2]
        )

    wait_for("both drafts re-sent", resent, timeout=float(WAIT_SECONDS))
    for key in keys[:2]:
        new = env.exports(key)[-1]
        assert new.attempt == 2
        run = _runs(webserver)[new.dagster_run_id or ""]
        assert run[RETRIED_BY_TAG] == "resend_drafts_needing_action_job"
        assert run[DROPZONE_HOST_TAG] == "local"
    assert {key: len(env.exports(key)) for key in rows_before} == rows_before
    new_files = set(os.listdir(env.outbox("acme"))) - files_before
    assert sorted(new_files) == sorted(env.exports(key)[-1].filename for key in keys[:2])


def _run_status(webserver: DagsterService, run_id: str) -> str | None:
    answer = graphql(
        webserver,
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
        {"id": run_id},
    )["runOrError"]
    status: str | None = answer.get("status")
    return status


_LAUNCH_JOB = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""


def _launch_resend_job(webserver: DagsterService, *, org_id: str) -> str:
    [node] = graphql(
        webserver,
        "query { repositoriesOrError { ... on RepositoryConnection "
        "{ nodes { name location { name } } } } }",
    )["repositoriesOrError"]["nodes"]
    params = {
        "selector": {
            "repositoryLocationName": node["location"]["name"],
            "repositoryName": node["name"],
            "jobName": "resend_drafts_needing_action_job",
        },
        "runConfigData": {
            "ops": {
                "resend_drafts_needing_action": {
                    "config": {"org_id": org_id, "dagster_url": webserver.url}
                }
            }
        },
    }
    launched = graphql(webserver, _LAUNCH_JOB, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id: str = launched["run"]["runId"]
    return run_id
