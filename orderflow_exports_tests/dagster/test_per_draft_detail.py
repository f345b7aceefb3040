"""Per-draft truth on export_json's partitions, whatever the batch size, at linear storage cost."""

from typing import Any

import dagster as dg

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

EXPORT_JSON = dg.AssetKey("export_json")


def _stored(instance: dg.DagsterInstance, kind: str, partition: str) -> list[Any]:
    records_filter = dg.AssetRecordsFilter(asset_key=EXPORT_JSON, asset_partitions=[partition])
    fetch = (
        instance.fetch_materializations
        if kind == "materialization"
        else instance.fetch_observations
    )
    return list(fetch(records_filter, limit=100).records)


def _event(record: Any) -> Any:
    return (
        record.event_log_entry.dagster_event.step_materialization_data.materialization
        if record.event_log_entry.dagster_event.is_step_materialization
        else record.event_log_entry.dagster_event.asset_observation_data.asset_observation
    )


def _metadata(record: Any) -> dict[str, Any]:
    return dict(_event(record).metadata)


def test_a_batch_gives_every_partition_its_own_export_detail(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    keys = env.add_drafts(*(SampleDraft("acme", f"D-{i:03d}", lines=1 + i % 4) for i in range(60)))
    result = env.run_export(keys)
    assert result.success
    for key in keys:
        [row] = env.exports(key)
        assert row.status is ExportStatus.SENT
        # One materialization per draft: the run's counts plus the draft's own detail (its own
        # row, not its neighbours'), constant in size whatever the batch size.
        [mat] = _stored(env.instance, "materialization", key)
        detail = _metadata(mat)
        assert detail["export_count"].value == 60
        assert "exports" not in detail and len(detail) <= 16
        assert detail["export_id"].value == row.id
        assert detail["attempt"].value == 1
        assert detail["status"].value == "SENT"
        assert detail["filename"].value == row.filename
        assert detail["dropzone_path"] == dg.MetadataValue.path(row.dropzone_path)
        assert detail["archive"] == dg.MetadataValue.path(row.storage_key)
        assert detail["content_sha256"].value == row.content_sha256
        assert detail["byte_size"].value == row.byte_size
        assert detail["line_count"].value == row.line_count
        assert not [
            k
            for k, v in detail.items()
            if isinstance(v.value, str) and "D-" in v.value and key.split(":")[1] not in v.value
        ]
    # A successful batch writes no extra event per draft: no observation, no per-draft log line.
    assert not _stored(env.instance, "observation", keys[0])
    logged = [e for e in env.instance.all_logs(result.run_id) if not e.is_dagster_event]
    assert len(logged) < 5, [e.user_message for e in logged]
    assert len({env.exports(k)[0].id for k in keys}) == 60


def test_a_failed_draft_in_a_batch_says_so_on_its_own_partition(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex", export_path=str(env.dropzones / "missing"))
    keys = env.add_drafts(SampleDraft("acme", "A-1"), SampleDraft("globex", "G-1"))
    result = env.run_export(keys)
    assert not result.success
    [sent] = env.exports("acme:A-1")
    [acme_obs] = _stored(env.instance, "observation", "acme:A-1")
    assert _metadata(acme_obs)["export_id"].value == sent.id
    assert _metadata(acme_obs)["status"].value == "SENT"
    [globex_obs] = _stored(env.instance, "observation", "globex:G-1")
    detail = _metadata(globex_obs)
    assert detail["status"].value == "FAILED"
    assert detail["error_code"].value  # the transport's code, e.g. a missing folder
    [failed] = env.exports("globex:G-1")
    assert failed.status is ExportStatus.FAILED
    assert failed.error_code == detail["error_code"].value
