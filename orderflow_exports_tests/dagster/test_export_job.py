"""export_drafts_job in process on the embedded defaults: files, rows, metadata, archive."""

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from orderflow_exports import defs
from orderflow_exports.defs.assets import approved_drafts, export_json
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.documents import (
    SNAPSHOT_CREATED_AT,
    SNAPSHOT_DRAFT,
    SNAPSHOT_EXPORT_ID,
)
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "export_json_v1.snapshot.json"


def _materializations(result: dg.ExecuteInProcessResult, asset: str) -> list:
    return [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == dg.AssetKey(asset)
    ]


def test_one_partition_end_to_end_with_dg_materialize(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SNAPSHOT_DRAFT)
    result = dg.materialize(
        [approved_drafts, export_json],
        partition_key=key,
        instance=env.instance,
        resources=defs.resources,
    )
    assert result.success
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT and row.attempt == 1 and not row.forced
    assert row.dagster_run_id == result.run_id
    published = Path(row.dropzone_path)
    assert published.parent == env.outbox("acme")
    assert os.listdir(env.outbox("acme")) == [row.filename]
    data = published.read_bytes()
    # The snapshot with this run's export id and timestamp injected is the file, byte for byte.
    created = row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = (
        SNAPSHOT.read_bytes()
        .replace(SNAPSHOT_EXPORT_ID.encode(), row.id.encode())
        .replace(SNAPSHOT_CREATED_AT.strftime("%Y-%m-%dT%H:%M:%SZ").encode(), created.encode())
    )
    assert data == expected
    assert row.byte_size == len(data) and row.line_count == 5
    # Materialization metadata.
    [mat] = _materializations(result, "export_json")
    assert mat.partition == key
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["export_id"] == row.id
    assert meta["filename"] == row.filename
    assert meta["dropzone_path"] == row.dropzone_path
    assert meta["content_sha256"] == row.content_sha256
    assert meta["byte_size"] == len(data)
    assert meta["line_count"] == 5
    assert meta["status"] == "SENT"
    # The archived copy is identical and sits under the org-isolated key.
    archived = env.store_root / "exports" / "acme" / "D-1003" / f"{row.id}.json"
    assert archived.read_bytes() == data
    assert row.storage_key == str(archived)
    # The IO manager loads the archived bytes back for downstream steps and checks.
    loaded: list[bytes] = []

    @dg.asset(partitions_def=export_json.partitions_def)
    def downstream(export_json: bytes) -> None:
        loaded.append(export_json)

    assert dg.materialize(
        [export_json.to_source_asset(), downstream],
        partition_key=key,
        instance=env.instance,
        resources=defs.resources,
    ).success
    assert loaded == [data]


def test_rematerializing_is_idempotent_and_force_is_explicit(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=3))
    assert env.run_export([key]).success
    again = env.run_export([key])
    assert again.success
    [row] = env.exports(key)  # nothing new, nothing sent twice
    assert len(os.listdir(env.outbox("acme"))) == 1
    [mat] = _materializations(again, "export_json")
    assert mat.metadata["action"].value == "already_sent"
    assert mat.metadata["export_id"].value == row.id

    forced = env.run_export([key], force=True)
    assert forced.success
    first, second = env.exports(key)
    assert first.status is ExportStatus.FAILED and first.error_code == "SUPERSEDED"
    assert second.status is ExportStatus.SENT and second.forced and second.attempt == 2
    assert len(os.listdir(env.outbox("acme"))) == 2


@pytest.fixture
def read_only_outbox(orderflow_env: OrderflowEnv) -> Iterator[Path]:
    orderflow_env.add_local_connector("acme")
    outbox = orderflow_env.outbox("acme")
    if os.geteuid() == 0:  # root ignores permission bits: mount a read-only file system
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(outbox)], check=True
        )
        try:
            yield outbox
        finally:
            subprocess.run(["umount", "-l", str(outbox)], check=True)
    else:
        outbox.chmod(0o555)
        try:
            yield outbox
        finally:
            outbox.chmod(0o755)


def test_read_only_dropzone_fails_the_run_and_the_row(
    orderflow_env: OrderflowEnv, read_only_outbox: Path
) -> None:
    env = orderflow_env
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=3))
    result = env.run_export([key])
    assert not result.success
    [row] = env.exports(key)
    assert row.status is ExportStatus.FAILED
    assert row.error_code == "PERMISSION"
    assert "permanent" in (row.error_message or "")
    assert os.listdir(read_only_outbox) == []  # no final file, no temp
    spool = env.home / "orderflow" / "spool"
    assert not [p for p in spool.rglob("*") if p.is_file()]  # a FAILED attempt keeps no copy
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure and "PERMISSION (permanent)" in str(failure[0].event_specific_data)
    # A permanent error is not retried inside the run.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_failed_export_is_retried_by_rematerializing(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme", export_path=str(env.dropzones / "missing"))
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=2))
    assert not env.run_export([key]).success
    [failed] = env.exports(key)
    assert failed.status is ExportStatus.FAILED and failed.error_code == "CONFIG"
    env.add_local_connector("acme")
    assert env.run_export([key]).success
    first, second = env.exports(key)
    assert first == failed  # the failed row is never turned into a success
    assert second.status is ExportStatus.SENT and second.attempt == 2
    assert second.id != first.id and second.filename != first.filename


def test_batch_run_isolates_failures(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex", export_path=str(env.dropzones / "missing"))
    keys = env.add_drafts(
        SampleDraft("acme", "A-1"), SampleDraft("globex", "G-1"), SampleDraft("acme", "A-2")
    )
    result = env.run_export(keys)
    assert not result.success
    assert env.exports(keys[0])[0].status is ExportStatus.SENT
    assert env.exports(keys[1])[0].status is ExportStatus.FAILED
    assert env.exports(keys[2])[0].status is ExportStatus.SENT
    # Sent ones were archived even though the step failed.
    for key in (keys[0], keys[2]):
        row = env.exports(key)[0]
        assert Path(row.storage_key).read_bytes() == Path(row.dropzone_path).read_bytes()
    # Re-running the batch re-sends only the failed one.
    env.add_local_connector("globex")
    assert env.run_export(keys).success
    assert [len(env.exports(k)) for k in keys] == [1, 2, 1]


@pytest.mark.parametrize(
    "sample,reason",
    [
        (SampleDraft("acme", "D-9", status="DRAFT"), "only APPROVED drafts are exported"),
        (SampleDraft("acme", "D-8", lines=0), "has no lines"),
    ],
)
def test_refused_drafts_fail_with_a_clear_message(
    orderflow_env: OrderflowEnv, sample: SampleDraft, reason: str
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(sample)
    result = env.run_export([key])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "approved_drafts"
    assert reason in str(failure.event_specific_data)
    assert env.exports(key) == []


def test_org_without_connector_is_refused(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    [key] = env.add_drafts(SampleDraft("nocfg", "D-1"))
    result = env.run_export([key])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no enabled DROPZONE_JSON_V1 connector" in str(failure.event_specific_data)
    assert env.exports(key) == []


def test_losing_an_insert_race_leaves_no_spool_file(
    orderflow_env: OrderflowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run inserts its PENDING row between our check and our insert."""
    from dataclasses import replace as dc_replace

    from orderflow_exports.adapters.sql.ledger import SqlExportLedger

    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    original = SqlExportLedger.create_pending

    def racing_create_pending(self, new, *, supersede=None):  # type: ignore[no-untyped-def]
        rival = dc_replace(new, id=str(uuid.uuid4()), dagster_run_id="rival-run")
        original(self, rival, supersede=None)
        return original(self, new, supersede=supersede)

    monkeypatch.setattr(SqlExportLedger, "create_pending", racing_create_pending)
    result = env.run_export([key])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "already in flight" in str(failure.event_specific_data)
    [rival] = env.exports(key)
    assert rival.dagster_run_id == "rival-run" and rival.status is ExportStatus.PENDING
    spool = env.home / "orderflow" / "spool"
    assert not [p for p in spool.rglob("*") if p.is_file()]
    assert os.listdir(env.outbox("acme")) == []


def test_an_error_after_the_rename_is_checked_against_the_dropzone(
    orderflow_env: OrderflowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply to the rename is lost (timeout), but the file landed: SENT, never a 2nd copy."""
    from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
    from orderflow_exports.domain.errors import ExportError

    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    real_publish = LocalDropzoneSession.publish

    def publish_then_time_out(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_publish(self, *args, **kwargs)
        raise ExportError(ErrorCode.TIMEOUT, "no reply to the rename", transient=True)

    monkeypatch.setattr(LocalDropzoneSession, "publish", publish_then_time_out)
    result = env.run_export([key])
    assert result.success
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT and row.rename_started_at is not None
    assert os.listdir(env.outbox("acme")) == [row.filename]
    assert Path(row.storage_key).read_bytes() == Path(row.dropzone_path).read_bytes()


def test_a_file_the_erp_took_before_sent_was_recorded_is_not_sent_again(
    orderflow_env: OrderflowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published; recording SENT fails; the ERP moves the file away before the step retry."""
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger

    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    real_mark_sent = SqlExportLedger.mark_sent
    failures: list[str] = []

    def lost_once(self, export_id, *, at):  # type: ignore[no-untyped-def]
        if failures:
            return real_mark_sent(self, export_id, at=at)
        failures.append(export_id)
        for published in env.outbox("acme").iterdir():  # the ERP consumes its inbound file
            published.rename(env.dropzones / f"erp-took-{published.name}")
        raise RuntimeError("database connection lost")

    monkeypatch.setattr(SqlExportLedger, "mark_sent", lost_once)
    result = env.run_export([key])
    assert result.success
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 1
    [row] = env.exports(key)  # no second attempt, no second copy
    assert row.id == failures[0] and row.status is ExportStatus.SENT
    assert row.rename_started_at is not None
    assert os.listdir(env.outbox("acme")) == []
    assert len(list(env.dropzones.glob("erp-took-*"))) == 1


def test_a_refused_draft_does_not_stop_its_batch(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    keys = env.add_drafts(
        SampleDraft("acme", "D-1"),
        SampleDraft("acme", "D-2", status="CANCELLED"),
        SampleDraft("acme", "D-3"),
    )
    result = env.run_export(keys)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "export_json"
    assert "acme:D-2" in str(failure.event_specific_data)
    assert "only APPROVED drafts are exported" in str(failure.event_specific_data)
    assert [len(env.exports(k)) for k in keys] == [1, 0, 1]
    assert len(os.listdir(env.outbox("acme"))) == 2
