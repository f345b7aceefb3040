"""export_drafts_job archiving to S3: moto's server over real HTTP, found through AWS_ENDPOINT_URL.

The run is configured only by the environment, as in production: ``ORDERFLOW_EXPORT_STORE`` is
``s3://bucket/prefix`` and the endpoint and credentials come from the standard AWS variables. The
bucket is versioned, so an object that was replaced (rather than refused with 412) would show as
a second version. The adapter's own cases (multipart, abort, classification) are in
``adapters/test_s3_export_store.py``; this file checks the Dagster wiring.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import update

from orderflow_exports import defs
from orderflow_exports.adapters.sql.tables import erp_export
from orderflow_exports.application.export_service import ExportOutcome
from orderflow_exports.defs.assets import EXPORT_ARCHIVE_IO_MANAGER_KEY, export_json
from orderflow_exports.defs.partitions import approved_drafts_partitions
from orderflow_exports.defs.resources import ExportStoreResource
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.moto_s3 import S3Bucket
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

PREFIX = "orderflow/exports"
CLIENT_BUILT = "S3 client built for run"


@dataclass
class S3Env:
    """The embedded environment with its archive on a moto S3 bucket."""

    env: OrderflowEnv
    s3: S3Bucket

    def key(self, row: ExportRecord) -> str:
        return f"{PREFIX}/{row.org_id}/{row.draft_order_id}/{row.id}.json"

    def body(self, key: str) -> bytes:
        return self.s3.client.get_object(Bucket=self.s3.bucket, Key=key)["Body"].read()

    def versions(self) -> list[tuple[str, str]]:
        listing = self.s3.client.list_object_versions(Bucket=self.s3.bucket)
        return sorted((v["Key"], v["VersionId"]) for v in listing.get("Versions", []))

    def spool_file(self, row: ExportRecord) -> Path:
        """Where the run stages the file (ExportStoreResource's default spool folder)."""
        return (
            self.env.home
            / "orderflow"
            / "spool"
            / row.org_id
            / row.draft_order_id
            / f"{row.id}.json"
        )


@pytest.fixture
def s3_env(
    orderflow_env: OrderflowEnv, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3Env]:
    monkeypatch.setenv("ORDERFLOW_EXPORT_STORE", f"s3://{s3_bucket.bucket}/{PREFIX}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.endpoint_url)
    client, bucket = s3_bucket.client, s3_bucket.bucket
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    yield S3Env(orderflow_env, s3_bucket)
    # A versioned bucket keeps every version; remove them so the fixture can drop the bucket.
    listing = client.list_object_versions(Bucket=bucket)
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])


def _events(result: dg.ExecuteInProcessResult, event_type: str) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type_value == event_type]


def _step_failure(result: dg.ExecuteInProcessResult) -> str:
    [failure] = _events(result, "STEP_FAILURE")
    return str(failure.event_specific_data)


def _client_builds(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if CLIENT_BUILT in (entry.user_message or "")
    ]


def test_run_archives_exact_bytes_at_the_contract_key_with_one_client(s3_env: S3Env) -> None:
    env, s3 = s3_env.env, s3_env.s3
    env.add_local_connector("acme")
    env.add_local_connector("globex")
    keys = env.add_drafts(
        SampleDraft("acme", "D-1", lines=3),
        SampleDraft("acme", "D-2", lines=40),
        SampleDraft("globex", "G-1", lines=2),
    )
    result = env.run_export(keys)
    assert result.success
    rows = [row for key in keys for row in env.exports(key)]
    assert len(rows) == 3 and all(row.status is ExportStatus.SENT for row in rows)
    # Exactly one object per export, at {prefix}/{org}/{draft}/{export_id}.json, nothing else.
    assert s3.keys() == sorted(s3_env.key(row) for row in rows)
    for row in rows:
        key = s3_env.key(row)
        data = Path(row.dropzone_path).read_bytes()
        assert s3_env.body(key) == data  # byte for byte the file the ERP got
        head = s3.client.head_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["Metadata"] == {"sha256": row.content_sha256, "export-id": row.id}
        assert head["ContentType"] == "application/json"
        assert head["ContentLength"] == row.byte_size
        expected_checksum = base64.b64encode(bytes.fromhex(row.content_sha256)).decode()
        assert head["ChecksumSHA256"] == expected_checksum
        assert row.storage_key == f"s3://{s3.bucket}/{key}"
        assert not s3_env.spool_file(row).exists()  # spool copy released once archived
    # One boto3 client for the whole run (asset and IO manager share it), not one per export,
    # and it was pointed at the endpoint named by AWS_ENDPOINT_URL.
    [built] = _client_builds(env.instance, result.run_id)
    assert s3.endpoint_url in built
    mats = [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in _events(result, "ASSET_MATERIALIZATION")
        if e.asset_key == dg.AssetKey("export_json")
    ]
    assert sorted(str(m.partition) for m in mats) == sorted(keys)
    # Each draft's archive location is on its own partition's materialization (a URL for S3).
    assert {str(m.partition): m.metadata["archive"] for m in mats} == {
        key: dg.MetadataValue.url(row.storage_key) for key, row in zip(keys, rows, strict=True)
    }


def test_downstream_steps_load_the_archived_bytes(s3_env: S3Env) -> None:
    env = s3_env.env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert env.run_export([key]).success
    [row] = env.exports(key)
    loaded: list[bytes] = []

    @dg.asset(partitions_def=approved_drafts_partitions)
    def downstream(export_json: bytes) -> None:
        loaded.append(export_json)

    result = dg.materialize(
        [export_json.to_source_asset(), downstream],
        partition_key=key,
        instance=env.instance,
        resources=defs.resources,
    )
    assert result.success
    assert loaded == [Path(row.dropzone_path).read_bytes()]
    assert len(_client_builds(env.instance, result.run_id)) == 1


def test_rerun_is_idempotent_and_a_412_with_the_same_bytes_is_success(s3_env: S3Env) -> None:
    env = s3_env.env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert env.run_export([key]).success
    [row] = env.exports(key)
    versions = s3_env.versions()
    assert len(versions) == 1

    # Plain re-run: already sent, nothing sent or written again.
    again = env.run_export([key])
    assert again.success
    assert env.exports(key) == [row]
    assert s3_env.versions() == versions

    # A run that died after archiving but before releasing its spool copy: the re-run writes
    # the same bytes again, S3 refuses with 412, the stored SHA-256 matches, and that is success.
    spool = s3_env.spool_file(row)
    spool.parent.mkdir(parents=True)
    shutil.copyfile(row.dropzone_path, spool)
    retried = env.run_export([key])
    assert retried.success
    assert not _events(retried, "STEP_UP_FOR_RETRY")
    assert s3_env.versions() == versions  # refused, not replaced
    assert s3_env.body(s3_env.key(row)) == Path(row.dropzone_path).read_bytes()
    assert not spool.exists()
    assert env.exports(key) == [row]


def test_different_bytes_under_the_key_fail_loudly_and_are_kept(s3_env: S3Env) -> None:
    env, s3 = s3_env.env, s3_env.s3
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert env.run_export([key]).success
    [row] = env.exports(key)
    object_key = s3_env.key(row)
    # Someone replaced the archived object (a plain PUT, outside this project).
    s3.client.put_object(Bucket=s3.bucket, Key=object_key, Body=b'{"tampered": true}')
    spool = s3_env.spool_file(row)
    spool.parent.mkdir(parents=True)
    shutil.copyfile(row.dropzone_path, spool)

    result = env.run_export([key])
    assert not result.success
    message = _step_failure(result)
    assert "already holds different bytes" in message and object_key in message
    assert not _events(result, "STEP_UP_FOR_RETRY")  # a conflict is not retried
    assert s3_env.body(object_key) == b'{"tampered": true}'  # never overwritten
    assert len(s3_env.versions()) == 2  # ours and the tampered one; no third
    assert spool.exists()  # the spool copy is kept as evidence
    assert env.exports(key) == [row]


# --- tenant isolation --------------------------------------------------------------------------


def _exported(s3_env: S3Env) -> tuple[ExportRecord, ExportRecord]:
    """acme:D-1 and globex:G-1 exported and archived; returns their rows."""
    env = s3_env.env
    env.add_local_connector("acme")
    env.add_local_connector("globex")
    acme_key, globex_key = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("globex", "G-1"))
    assert env.run_export([acme_key]).success
    assert env.run_export([globex_key]).success
    [acme] = env.exports(acme_key)
    [globex] = env.exports(globex_key)
    return acme, globex


def _forged_asset(outputs: dict[str, ExportOutcome]) -> dg.AssetsDefinition:
    """An asset on the export-store IO manager that hands it ``outputs`` as its output."""

    @dg.asset(
        partitions_def=approved_drafts_partitions,
        io_manager_key=EXPORT_ARCHIVE_IO_MANAGER_KEY,
    )
    def forged_export() -> dict[str, ExportOutcome]:
        return outputs

    return forged_export


def _outcome(s3_env: S3Env, tmp_path: Path, row: ExportRecord, ref: DraftRef) -> ExportOutcome:
    """A 'sent' outcome for ``ref`` carrying ``row`` and a real spool copy of its file."""
    staged = tmp_path / f"{row.id}.json"
    shutil.copyfile(row.dropzone_path, staged)
    return ExportOutcome(ref=ref, action="sent", record=row, spool_file=staged)


@pytest.mark.parametrize("forged_ref", ["globex", "acme"], ids=["other-org", "relabelled"])
def test_outcome_of_another_org_is_refused_for_a_partition(
    s3_env: S3Env, tmp_path: Path, forged_ref: str
) -> None:
    """An acme partition handed globex's export (as is, or relabelled as acme's) writes nothing."""
    acme, globex = _exported(s3_env)
    before = s3_env.versions()
    ref = acme.ref if forged_ref == "acme" else globex.ref
    outcome = _outcome(s3_env, tmp_path, globex, ref)
    result = dg.materialize(
        [_forged_asset({"acme:D-1": outcome})],
        partition_key="acme:D-1",
        instance=s3_env.env.instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    assert not result.success
    assert "refusing to archive" in _step_failure(result)
    assert not _events(result, "STEP_UP_FOR_RETRY")
    assert s3_env.versions() == before  # nothing under globex/, nothing under acme/
    assert outcome.spool_file is not None and outcome.spool_file.exists()


def test_output_with_partitions_the_run_did_not_select_is_refused(
    s3_env: S3Env, tmp_path: Path
) -> None:
    acme, globex = _exported(s3_env)
    before = s3_env.versions()
    outputs = {
        "acme:D-1": _outcome(s3_env, tmp_path, acme, acme.ref),
        "globex:G-1": _outcome(s3_env, tmp_path, globex, globex.ref),
    }
    result = dg.materialize(
        [_forged_asset(outputs)],
        partition_key="acme:D-1",
        instance=s3_env.env.instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    assert not result.success
    assert "did not select: ['globex:G-1']" in _step_failure(result)
    assert s3_env.versions() == before


def test_a_row_pointing_at_another_orgs_object_is_never_read(s3_env: S3Env) -> None:
    """The load key comes from the partition and export id, not from the row's storage_key."""
    acme, globex = _exported(s3_env)
    env = s3_env.env
    with env.engine.begin() as conn:
        conn.execute(
            update(erp_export)
            .where(erp_export.c.id == acme.id)
            .values(storage_key=globex.storage_key)
        )
    loaded: list[bytes] = []

    @dg.asset(partitions_def=approved_drafts_partitions)
    def downstream(export_json: bytes) -> None:
        loaded.append(export_json)

    assert dg.materialize(
        [export_json.to_source_asset(), downstream],
        partition_key="acme:D-1",
        instance=env.instance,
        resources=defs.resources,
    ).success
    assert loaded == [Path(acme.dropzone_path).read_bytes()]
    assert loaded[0] != Path(globex.dropzone_path).read_bytes()


def test_an_org_view_of_the_resource_refuses_every_other_orgs_key(s3_env: S3Env) -> None:
    acme, globex = _exported(s3_env)
    with dg.build_resources({"export_store": ExportStoreResource()}) as resources:
        scoped = resources.export_store.for_org("acme")
        assert scoped.get_bytes(s3_env.key(acme)) == Path(acme.dropzone_path).read_bytes()
        attempts: list[Callable[[], object]] = [
            lambda: scoped.get_bytes(s3_env.key(globex)),
            lambda: scoped.exists(s3_env.key(globex)),
            lambda: scoped.key_for(globex.ref, globex.id),
            lambda: scoped.get_bytes(f"{PREFIX}/acme/../globex/G-1/{globex.id}.json"),
            lambda: scoped.for_org("globex"),
        ]
        for attempt in attempts:
            with pytest.raises(ExportError) as refused:
                attempt()
            assert refused.value.code == ErrorCode.ARCHIVE and not refused.value.transient
