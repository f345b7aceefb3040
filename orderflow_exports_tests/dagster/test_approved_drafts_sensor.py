"""approved_drafts_sensor evaluated with build_sensor_context on the embedded defaults."""

import dagster as dg

from orderflow_exports import defs
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.sensors import DROPZONE_HOST_TAG, approved_drafts_sensor
from orderflow_exports.demo import SampleDraft
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
