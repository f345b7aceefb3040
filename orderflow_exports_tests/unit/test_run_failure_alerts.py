"""Failed runs as alerts (application/run_failures.py), on the in-memory run history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orderflow_exports.application.run_failures import (
    ERROR_LIMIT,
    failed_run_alert,
    failed_run_alerts,
    run_partition_keys,
)
from orderflow_exports.domain.alerts import AlertKind
from orderflow_exports.domain.ports import FailedRun
from orderflow_exports_tests.fakes.sources import FakeRunFailures

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
JOB = "export_drafts_job"


def _run(run_id: str, job: str = JOB, error: str | None = "boom", **tags: str) -> FailedRun:
    return FailedRun(run_id=run_id, job_name=job, tags=tags, error=error)


def test_a_run_of_one_partition_names_its_draft_org_and_resend_step() -> None:
    alert = failed_run_alert(
        _run("r-1", error="step export_json: refused", **{"dagster/partition": "acme:D-7"})
    )
    assert alert.kind == AlertKind.RUN_FAILED
    assert alert.title == "run r-1 of export_drafts_job failed"
    assert alert.org_id == "acme" and alert.drafts == ("acme:D-7",)
    assert alert.error_code == "RUN_FAILURE"
    assert alert.error_message == "step export_json: refused"
    assert alert.event_keys == ("RUN_FAILED:r-1",)
    assert "orderflow-exports exports retry --org acme --draft D-7" in alert.next_step
    assert alert.details == {"dagster_run_id": "r-1", "job": JOB}


def test_a_ranged_run_names_its_range_and_no_draft() -> None:
    tags = {
        "dagster/asset_partition_range_start": "acme:D-1",
        "dagster/asset_partition_range_end": "acme:D-9",
    }
    assert run_partition_keys(tags) == ([], {"partition_range": "acme:D-1...acme:D-9"})
    alert = failed_run_alert(_run("r-2", **tags))
    assert alert.drafts == () and alert.org_id is None
    assert alert.details["partition_range"] == "acme:D-1...acme:D-9"
    assert "exports retry --org <org_id> --draft <draft_order_id>" in alert.next_step


def test_a_run_without_partition_tags_names_nothing() -> None:
    assert run_partition_keys({}) == ([], {})
    assert run_partition_keys({"dagster/asset_partition_range_start": "acme:D-1"}) == ([], {})
    assert run_partition_keys({"dagster/partition": ""}) == ([], {})


def test_the_first_error_is_cut_short_and_none_stays_none() -> None:
    long = failed_run_alert(_run("r-3", error="x" * (ERROR_LIMIT + 50)))
    assert long.error_message == "x" * ERROR_LIMIT
    assert failed_run_alert(_run("r-4", error=None)).error_message is None


def test_runs_of_the_lookback_become_one_alert_each() -> None:
    history = FakeRunFailures()
    history.add(_run("old"), updated_at=NOW - timedelta(hours=30))
    history.add(_run("r-5"), updated_at=NOW - timedelta(hours=2))
    history.add(_run("r-6"), updated_at=NOW - timedelta(minutes=5))
    history.add(_run("other", job="reconcile_dropzones_job"), updated_at=NOW)
    since = NOW - timedelta(hours=24)
    alerts = failed_run_alerts(history, JOB, since=since, limit=10)
    assert [a.event_keys for a in alerts] == [("RUN_FAILED:r-6",), ("RUN_FAILED:r-5",)]
    assert history.asked == [(JOB, since, 10)]
    assert len(failed_run_alerts(history, JOB, since=since, limit=1)) == 1
