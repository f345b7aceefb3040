"""approved_drafts_sensor evaluated with build_sensor_context on the embedded defaults."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import update

from orderflow_exports import defs
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.tables import draft_order
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.sensors import (
    approved_drafts_sensor,
    evaluate_approved_drafts,
)
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG
from orderflow_exports.domain.export_requests import MAX_REDRIVES, RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv


def _evaluate(env: OrderflowEnv) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=env.instance, resources={"database": DatabaseResource()}, definitions=defs
    ) as context:
        return approved_drafts_sensor(context)


def test_new_approvals_become_partitions_and_one_batched_run(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex", enabled=False)
    env.add_drafts(
        SampleDraft("acme", "D-1"),
        SampleDraft("acme", "D-2"),
        SampleDraft("acme", "D-3"),
        SampleDraft("acme", "D-4", status="DRAFT"),
        SampleDraft("acme", "D-5", lines=0),
        SampleDraft("globex", "G-1"),
        SampleDraft("nocfg", "N-1"),
        partitions=False,
    )
    result = _evaluate(env)
    assert isinstance(result, dg.SensorResult)
    [add] = result.dynamic_partitions_requests or []
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert add.partitions_def_name == "approved_drafts"
    assert list(add.partition_keys) == ["acme:D-1", "acme:D-2", "acme:D-3"]
    [request] = result.run_requests or []
    assert request.run_key == "export:acme:D-1..acme:D-3"
    assert request.tags["dagster/asset_partition_range_start"] == "acme:D-1"
    assert request.tags["dagster/asset_partition_range_end"] == "acme:D-3"
    assert request.tags[DROPZONE_HOST_TAG] == "local"

    # The daemon applies the partition request; here the test does it (FACTS.md).
    env.add_partitions(add.partition_keys)
    second = _evaluate(env)
    assert isinstance(second, dg.SkipReason)
    assert "no new approved drafts" in (second.skip_message or "")
    assert "globex:G-1: org globex has no enabled connector" in (second.skip_message or "")
    assert "acme:D-5: draft acme:D-5 has no lines" in (second.skip_message or "")
    assert "acme:D-4" not in (second.skip_message or "")  # not approved: never a candidate


def test_single_new_draft_gets_a_partition_run_request(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_drafts(SampleDraft("acme", "D-1"), partitions=False)
    result = _evaluate(env)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    assert request.partition_key == "acme:D-1"
    assert request.run_key == "export:acme:D-1"


def test_exported_drafts_are_not_requested_again(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    keys = env.add_drafts(SampleDraft("acme", "D-1"))
    assert env.run_export(keys).success
    env.instance.delete_dynamic_partition("approved_drafts", keys[0])
    result = _evaluate(env)
    assert isinstance(result, dg.SkipReason)  # it has an export row: nothing to do


def test_a_backlog_of_unexportable_drafts_does_not_hide_new_approvals(
    orderflow_env: OrderflowEnv,
) -> None:
    from datetime import timedelta

    from orderflow_exports.defs import sensors

    env = orderflow_env
    env.add_local_connector("acme")
    backlog = sensors._PAGE_SIZE + 50  # more than one page of drafts nobody can export
    env.add_drafts(
        *(SampleDraft("nocfg", f"N-{n}", lines=1) for n in range(backlog)), partitions=False
    )
    newer = SampleDraft("acme", "NEW-1").approved_at + timedelta(days=1)
    env.add_drafts(SampleDraft("acme", "NEW-1", approved_at=newer), partitions=False)
    result = _evaluate(env)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    assert request.partition_key == "acme:NEW-1"


def _evaluate_at(env: OrderflowEnv, now: datetime) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=env.instance, resources={"database": DatabaseResource()}, definitions=defs
    ) as context:
        return evaluate_approved_drafts(context, DatabaseResource(), now)


def _requested_keys(result: dg.SensorResult | dg.SkipReason) -> list[str]:
    assert isinstance(result, dg.SensorResult), result
    keys: list[str] = []
    for request in result.run_requests or []:
        if request.partition_key is not None:
            keys.append(request.partition_key)
        else:
            start = request.tags["dagster/asset_partition_range_start"]
            keys.append(f"{start}..{request.tags['dagster/asset_partition_range_end']}")
    return keys


def _set_core_status(env: OrderflowEnv, draft_id: str, status: str, at: datetime) -> None:
    """What OrderFlow core does when a person moves a draft (NOT OUR table: tests only)."""
    values = {
        "status": status,
        "updated_at": at,
        "approved_at": at if status == "APPROVED" else None,
    }
    with env.engine.begin() as conn:
        conn.execute(update(draft_order).where(draft_order.c.id == draft_id).values(**values))


def test_a_draft_refused_by_its_run_and_approved_again_is_requested_again(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"), partitions=False)
    now = datetime.now(UTC)
    first = _evaluate_at(env, now)
    assert _requested_keys(first) == [key]
    env.add_partitions([key])
    # Sent back to DRAFT after the sensor saw it: the run refuses it (no row, no file).
    _set_core_status(env, "D-1", "DRAFT", now + timedelta(seconds=5))
    assert not env.run_export([key]).success
    assert env.exports(key) == []
    request = SqlExportRequests(env.engine).get(DraftRef("acme", "D-1"))
    assert request is not None and request.last_outcome is RequestOutcome.REFUSED
    assert "is DRAFT" in (request.last_reason or "")
    assert isinstance(_evaluate_at(env, now + timedelta(minutes=1)), dg.SkipReason)

    _set_core_status(env, "D-1", "APPROVED", now + timedelta(minutes=2))
    again = _evaluate_at(env, now + timedelta(minutes=3))
    assert _requested_keys(again) == [key]
    assert isinstance(again, dg.SensorResult)
    assert not again.dynamic_partitions_requests  # the partition exists already
    [run] = again.run_requests or []
    assert run.run_key != first.run_requests[0].run_key  # type: ignore[union-attr]
    assert env.run_export([key]).success
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT
    assert isinstance(_evaluate_at(env, now + timedelta(hours=5)), dg.SkipReason)


def _corrupt(env: OrderflowEnv, draft_id: str, column: str, raw: str) -> None:
    """Store a value SQLite accepts but no reader can decode (core's data, tests only)."""
    with env.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE draft_order SET {column} = ? WHERE id = ?", (raw, draft_id))


def test_bad_core_rows_are_named_and_skipped_and_the_others_requested(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex")
    env.add_drafts(
        SampleDraft("acme", "D-1"),
        SampleDraft("acme", "BAD-JSON"),
        SampleDraft("acme", "BAD-DATE"),
        SampleDraft("globex", "BAD-MONTH"),
        SampleDraft("globex", "G-1"),
        partitions=False,
    )
    _corrupt(env, "BAD-JSON", "ship_to", "{not json")
    _corrupt(env, "BAD-DATE", "order_date", "garbage")
    _corrupt(env, "BAD-MONTH", "order_date", "2026-13-01")

    result = _evaluate_at(env, datetime.now(UTC))
    assert isinstance(result, dg.SensorResult)
    [add] = result.dynamic_partitions_requests or []
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert sorted(add.partition_keys) == ["acme:D-1", "globex:G-1"]

    # Nothing else to request: the tick says which rows it skipped, each by name.
    env.add_partitions(add.partition_keys)
    second = _evaluate_at(env, datetime.now(UTC))
    assert isinstance(second, dg.SkipReason)
    message = second.skip_message or ""
    for name, detail in (
        ("acme:BAD-JSON", "ship_to '{not json' is not JSON"),
        ("acme:BAD-DATE", "order_date 'garbage' is not a date"),
        ("globex:BAD-MONTH", "order_date '2026-13-01' is not a date"),
    ):
        assert f"{name}: draft {name}: {detail}" in message, message


def test_a_transient_failure_is_redriven_with_growing_backoff_until_a_person_is_needed(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"), partitions=False)
    ref = DraftRef("acme", "D-1")
    requests = SqlExportRequests(env.engine)
    now = datetime.now(UTC)
    assert _requested_keys(_evaluate_at(env, now)) == [key]
    env.add_partitions([key])
    waits = []
    for redrive in range(MAX_REDRIVES):
        # What export_json records when the dropzone refuses the connection (no row).
        record = requests.record_outcome(
            ref, RequestOutcome.TRANSIENT, "[CONNECTION] connection refused", at=now
        )
        assert record.next_due_at is not None and record.needs_person_since is None
        waits.append(record.next_due_at - now)
        assert isinstance(
            _evaluate_at(env, record.next_due_at - timedelta(seconds=1)), dg.SkipReason
        )
        now = record.next_due_at
        again = _evaluate_at(env, now)
        assert _requested_keys(again) == [key], redrive
        [run] = again.run_requests or []  # type: ignore[union-attr]
        assert run.run_key.startswith(f"export:{key}@")
    assert [w // timedelta(minutes=1) for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60]

    last = requests.record_outcome(
        ref, RequestOutcome.TRANSIENT, "[CONNECTION] connection refused", at=now
    )
    assert last.needs_person_since == now and last.next_due_at is None
    assert last.redrive_count == MAX_REDRIVES and last.request_count == MAX_REDRIVES + 1
    assert isinstance(_evaluate_at(env, now + timedelta(days=30)), dg.SkipReason)
    [listed] = requests.needing_person()
    assert listed.ref == ref and "needs a person" in (listed.last_reason or "")

    # A person fixes the cause and sends it; it is done, and no longer listed.
    assert env.run_export([key]).success
    assert requests.needing_person() == []
    assert isinstance(_evaluate_at(env, now + timedelta(days=31)), dg.SkipReason)


def test_drafts_requested_again_run_only_over_stretches_of_requested_partitions(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    keys = env.add_drafts(*(SampleDraft("acme", f"D-{n}") for n in range(1, 6)), partitions=False)
    requests = SqlExportRequests(env.engine)
    now = datetime.now(UTC)
    result = _evaluate_at(env, now)
    assert _requested_keys(result) == ["acme:D-1..acme:D-5"]
    env.add_partitions(keys)
    # D-3 went out; the others met an outage (what export_json records for them).
    assert env.run_export(["acme:D-3"]).success
    for n in (1, 2, 4, 5):
        requests.record_outcome(DraftRef("acme", f"D-{n}"), RequestOutcome.TRANSIENT, "x", at=now)
    later = now + timedelta(minutes=1)
    again = _evaluate_at(env, later)
    # A range run covers every partition between its ends: D-3 must not be inside one.
    assert sorted(_requested_keys(again)) == ["acme:D-1..acme:D-2", "acme:D-4..acme:D-5"]
    assert isinstance(again, dg.SensorResult) and not again.dynamic_partitions_requests
    assert all("@" in (r.run_key or "") for r in again.run_requests or [])
    assert isinstance(_evaluate_at(env, later), dg.SkipReason)  # requested once per due time
