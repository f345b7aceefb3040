"""The retry use case on in-memory ports: what is refused, the tags, following run retries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from orderflow_exports.application.retry import (
    RetryLaunch,
    RetryPlan,
    RetryRefused,
    failed_drafts,
    launch_retries,
    plan_retry,
    wait_for_outcome,
)
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import LaunchedRun
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LOCAL = ConnectorConfig(org_id="acme", transport="local", export_path="/o", ack_path="/a")
SFTP = ConnectorConfig(
    org_id="acme",
    transport="sftp",
    export_path="/o",
    ack_path="/a",
    host="erp.acme.example",
    port=22,
    username="u",
    host_key="SHA256:x",
    private_key_ref="env:ORDERFLOW_SECRET_ACME_KEY",
)


def record(draft: str, attempt: int, status: ExportStatus, code: str | None = None) -> ExportRecord:
    return ExportRecord(
        id=f"e-{draft}-{attempt}",
        org_id="acme",
        draft_order_id=draft,
        connector_type="DROPZONE_JSON_V1",
        attempt=attempt,
        status=status,
        filename=f"acme_{draft}_{attempt}.json",
        dropzone_path="/o",
        storage_key="k",
        content_sha256="0" * 64,
        byte_size=1,
        line_count=1,
        forced=False,
        erp_order_number=None,
        error_code=code,
        error_message=None,
        dagster_run_id=None,
        created_at=NOW,
        sent_at=None,
        acked_at=None,
        updated_at=NOW,
    )


class Ledger:
    """The two ledger reads the use case makes, over a list of rows."""

    def __init__(self, rows: list[ExportRecord]) -> None:
        self.rows = rows

    def latest(self, ref: DraftRef) -> ExportRecord | None:
        mine = [r for r in self.rows if r.ref == ref]
        return max(mine, key=lambda r: r.attempt) if mine else None

    def list(self, *, org_id=None, status=None, limit=100):  # type: ignore[no-untyped-def]
        return [
            r
            for r in self.rows
            if (org_id is None or r.org_id == org_id) and (status is None or r.status is status)
        ][:limit]


class Configs:
    def __init__(self, *configs: ConnectorConfig) -> None:
        self.configs = {c.org_id: c for c in configs}

    def get(self, org_id: str) -> ConnectorConfig | None:
        return self.configs.get(org_id)


class Deployment:
    """Runs whose statuses are scripted per poll."""

    def __init__(self, script: dict[str, list[LaunchedRun]] | None = None) -> None:
        self.script = script or {}
        self.partitions: set[str] = {"acme:D-1"}
        self.launched: list[tuple[str, dict[str, str], bool]] = []

    def ensure_partition(self, partition_key: str) -> bool:
        added = partition_key not in self.partitions
        self.partitions.add(partition_key)
        return added

    def launch_export(self, partition_key: str, *, tags: dict[str, str], force: bool) -> str:
        self.launched.append((partition_key, tags, force))
        return f"run-{len(self.launched)}"

    def run(self, run_id: str) -> LaunchedRun:
        states = self.script[run_id]
        return states.pop(0) if len(states) > 1 else states[0]

    def run_url(self, run_id: str) -> str:
        return f"http://ui/runs/{run_id}"


def plan(
    rows: list[ExportRecord], config: ConnectorConfig = LOCAL, force: bool = False
) -> RetryPlan:
    ref = DraftRef("acme", "D-1")
    return plan_retry(ref, ledger=Ledger(rows), configs=Configs(config), force=force)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [ExportStatus.SENT, ExportStatus.ACKED, ExportStatus.PENDING])
def test_sent_acked_and_pending_drafts_are_refused_without_force(status: ExportStatus) -> None:
    with pytest.raises(RetryRefused, match=f"attempt 2 is {status}"):
        plan([record("D-1", 1, ExportStatus.FAILED), record("D-1", 2, status)])
    forced = plan([record("D-1", 2, status)], force=True)
    assert forced.force and forced.latest is not None and forced.latest.status is status


def test_failed_and_never_exported_drafts_are_planned_with_the_host_tag() -> None:
    assert plan([]).tags[DROPZONE_HOST_TAG] == "local"
    failed = plan([record("D-1", 1, ExportStatus.FAILED, "CONNECTION")], config=SFTP)
    assert failed.tags[DROPZONE_HOST_TAG] == "erp.acme.example" and failed.warning is None
    assert not failed.force


def test_ack_timeout_warns_that_the_erp_may_hold_the_order() -> None:
    timed_out = plan([record("D-1", 1, ExportStatus.FAILED, "ACK_TIMEOUT")])
    assert timed_out.warning is not None
    assert "the ERP may already hold this order" in timed_out.warning
    assert "e-D-1-1" in timed_out.warning and "acme_D-1_1.json" in timed_out.warning


def test_no_or_disabled_connector_is_refused() -> None:
    ref = DraftRef("acme", "D-1")
    with pytest.raises(RetryRefused, match="has no connector"):
        plan_retry(ref, ledger=Ledger([]), configs=Configs(), force=False)  # type: ignore[arg-type]
    with pytest.raises(RetryRefused, match="is disabled"):
        plan([], config=replace(LOCAL, enabled=False))


def test_failed_drafts_are_those_whose_latest_attempt_failed() -> None:
    rows = [
        record("D-1", 1, ExportStatus.FAILED),
        record("D-1", 2, ExportStatus.SENT),
        record("D-2", 1, ExportStatus.FAILED),
        record("D-3", 1, ExportStatus.FAILED),
        record("D-3", 2, ExportStatus.FAILED),
    ]
    found = failed_drafts(Ledger(rows), org_id="acme", limit=10)  # type: ignore[arg-type]
    assert found == [DraftRef("acme", "D-2"), DraftRef("acme", "D-3")]
    assert failed_drafts(Ledger(rows), org_id="acme", limit=1) == [DraftRef("acme", "D-2")]  # type: ignore[arg-type]


def test_launch_adds_a_missing_partition_and_wait_follows_run_retries() -> None:
    deployment = Deployment(
        {
            "run-1": [
                LaunchedRun("run-1", "QUEUED"),
                LaunchedRun("run-1", "STARTED"),
                LaunchedRun("run-1", "FAILURE", will_retry=True),  # the daemon has not yet
                LaunchedRun("run-1", "FAILURE", retry_run_id="run-9", will_retry=True),
            ],
            "run-9": [LaunchedRun("run-9", "STARTED"), LaunchedRun("run-9", "SUCCESS")],
        }
    )
    plans = [plan([]), replace(plan([]), ref=DraftRef("acme", "D-2"))]
    launches = launch_retries(plans, deployment)
    assert [(la.run_id, la.partition_added) for la in launches] == [
        ("run-1", False),
        ("run-2", True),
    ]
    assert deployment.launched[1][0] == "acme:D-2"
    final = wait_for_outcome(launches[0], deployment, timeout=60, sleep=lambda _: None)
    assert final.status == "SUCCESS" and final.run_id == "run-9"
    assert launches[0].runs == ["run-1", "run-9"] and launches[0].final is final


def test_wait_gives_up_after_its_timeout_naming_the_run() -> None:
    deployment = Deployment({"run-1": [LaunchedRun("run-1", "QUEUED")]})
    launch = RetryLaunch(plan=plan([]), run_id="run-1", partition_added=False, runs=["run-1"])
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(
        TimeoutError, match="run-1 is still QUEUED after 30 s.*http://ui/runs/run-1"
    ):
        wait_for_outcome(
            launch, deployment, timeout=30, clock=lambda: float(next(ticks)), sleep=lambda _: None
        )
    # A failure the daemon will not retry is final.
    deployment.script["run-1"] = [LaunchedRun("run-1", "FAILURE")]
    assert (
        wait_for_outcome(launch, deployment, timeout=30, sleep=lambda _: None).status == "FAILURE"
    )
