"""Retention job and schedule on a real instance: only settled drafts lose their partition."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from orderflow_exports import defs
from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.retention import (
    RETENTION_DAYS_ENV,
    restore_partitions,
    retention_schedule,
)
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv


def _partitions(env: OrderflowEnv) -> set[str]:
    return set(env.instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME))


def test_retention_removes_only_settled_partitions_and_a_removed_draft_can_be_sent_again(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    keys = env.add_drafts(*(SampleDraft("acme", f"D-{n}") for n in range(1, 5)))
    assert env.run_export(keys).success
    ledger = env.ledger
    old = datetime.now(UTC) - timedelta(days=40)
    settled, active, timed_out, fresh = keys
    [row] = env.exports(settled)
    assert ledger.mark_acked(row.id, expected=ExportStatus.SENT, erp_order_number="SO", at=old)
    [row] = env.exports(timed_out)
    assert ledger.mark_failed(
        row.id, expected=ExportStatus.SENT, code="ACK_TIMEOUT", message="no ack", at=old
    )
    [row] = env.exports(fresh)
    assert ledger.mark_acked(
        row.id, expected=ExportStatus.SENT, erp_order_number="SO", at=datetime.now(UTC)
    )

    job = defs.resolve_job_def("retention_job")
    result = job.execute_in_process(
        instance=env.instance, resources={"database": DatabaseResource()}
    )
    assert result.success
    assert result.output_for_node("remove_settled_partitions_op") == 1
    assert _partitions(env) == {active, timed_out, fresh}
    assert len(env.exports(settled)) == 1  # erp_export keeps everything

    # A person re-sends the removed draft: its partition comes back, the run makes attempt 2.
    assert restore_partitions(env.instance, [settled, active]) == [settled]
    assert env.run_export([settled], force=True).success
    attempts = sorted(env.exports(settled), key=lambda r: r.attempt)
    assert [a.attempt for a in attempts] == [1, 2] and attempts[1].status is ExportStatus.SENT
    # Run again: the re-sent draft is active now and keeps its partition.
    again = job.execute_in_process(
        instance=env.instance, resources={"database": DatabaseResource()}
    )
    assert again.output_for_node("remove_settled_partitions_op") == 0
    assert settled in _partitions(env)


def test_a_removed_partition_is_added_back_by_the_sensor_when_the_draft_is_requested(
    orderflow_env: OrderflowEnv,
) -> None:
    from orderflow_exports.defs.sensors import evaluate_approved_drafts

    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    env.instance.delete_dynamic_partition(APPROVED_DRAFTS_PARTITIONS_NAME, key)
    with dg.build_sensor_context(
        instance=env.instance, resources={"database": DatabaseResource()}, definitions=defs
    ) as context:
        result = evaluate_approved_drafts(context, DatabaseResource(), datetime.now(UTC))
    assert isinstance(result, dg.SensorResult)
    [add] = result.dynamic_partitions_requests or []
    assert list(add.partition_keys) == [key]  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "days"), [(None, 30), ("7", 7), ("0", None)])
def test_the_schedule_reads_the_age_when_it_ticks(
    monkeypatch: pytest.MonkeyPatch, value: str | None, days: int | None
) -> None:
    if value is None:
        monkeypatch.delenv(RETENTION_DAYS_ENV, raising=False)
    else:
        monkeypatch.setenv(RETENTION_DAYS_ENV, value)
    with dg.build_schedule_context() as context:
        result = retention_schedule(context)
    if days is None:
        assert isinstance(result, dg.SkipReason)
        assert "retention is off" in (result.skip_message or "")
    else:
        assert isinstance(result, dg.RunRequest)
        config = result.run_config["ops"]["remove_settled_partitions_op"]["config"]
        assert config == {"max_age_days": days}


def test_the_schedule_is_in_the_definitions_and_runs_by_default() -> None:
    schedule = defs.resolve_schedule_def("retention_schedule")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "retention_job"
