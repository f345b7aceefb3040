"""Reconciler over real adapters: local folders and a real sshd, SQLite and PostgreSQL ledgers.

Every mismatch class is built for real (files with old modification times, rows in erp_export,
Dagster runs in a real instance for the run-liveness port), then reconciled read-only (nothing
changes) and with each fix switched on (only that fix happens).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.dagster_instance import DagsterRunLiveness
from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.application.export_service import ExportService
from orderflow_exports.application.publishing import ExportSettings
from orderflow_exports.application.reconciliation import (
    OrgReconciliation,
    Reconciler,
    ReconcileSettings,
)
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef, export_filename, temp_filename
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.adapters.test_ack_processing import Zone, ack

HOUR = 3600


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def add_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="export_drafts_job", run_id=run_id, status=status))
    return run_id


def age(path: Path, seconds: float) -> None:
    """Give ``path`` (not a symlink's target) a modification time ``seconds`` ago."""
    moment = datetime.now(UTC).timestamp() - seconds
    os.utime(path, (moment, moment), follow_symlinks=False)


def row(
    ledger: SqlExportLedger,
    config: ConnectorConfig,
    draft: str,
    status: ExportStatus,
    *,
    hours_ago: float,
    run_id: str | None = None,
    claimed: bool = False,
) -> ExportRecord:
    now = datetime.now(UTC)
    export_id = str(uuid.uuid4())
    ref = DraftRef(config.org_id, draft)
    created = (now - timedelta(hours=hours_ago)).replace(microsecond=0)
    name = export_filename(ref, created, export_id)
    ledger.create_pending(
        NewExport(
            id=export_id,
            ref=ref,
            attempt=1,
            filename=name,
            dropzone_path=f"{config.export_path}/{name}",
            storage_key=f"exports/{config.org_id}/{draft}/{export_id}.json",
            content_sha256="0" * 64,
            byte_size=2,
            line_count=1,
            forced=False,
            dagster_run_id=run_id,
            created_at=created,
        )
    )
    if claimed:
        assert ledger.mark_renaming(export_id, at=created)
    if status is not ExportStatus.PENDING:
        assert ledger.mark_sent(export_id, at=created)
    if status is ExportStatus.ACKED:
        assert ledger.mark_acked(
            export_id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=created
        )
    record = ledger.get(export_id)
    assert record is not None
    return record


def put(folder: str, name: str, seconds_old: float, data: bytes = b"{}") -> Path:
    path = Path(folder) / name
    path.write_bytes(data)
    age(path, seconds_old)
    return path


@dataclass
class Scene:
    """One org with one case of every mismatch class, and the normal cases beside them."""

    config: ConnectorConfig
    stale: ExportRecord
    fresh: ExportRecord
    foreign_like_ours: str
    orphan_temp: str
    orphan_pending: ExportRecord
    orphan_claimed: ExportRecord
    live_pending: ExportRecord
    unanswered: ExportRecord
    answered: ExportRecord
    acked: ExportRecord


def build_scene(zone: Zone, ledger: SqlExportLedger, instance: dg.DagsterInstance) -> Scene:
    config = zone.config("org-a")
    out = config.export_path
    # (a) sent 10 h ago, still offered; beside it a file sent 10 min ago (normal).
    stale = row(ledger, config, "D-stale", ExportStatus.SENT, hours_ago=10)
    put(out, stale.filename, 10 * HOUR)
    fresh = row(ledger, config, "D-fresh", ExportStatus.SENT, hours_ago=0.1)
    put(out, fresh.filename, 360)
    # (b) a file nobody here wrote, one named like ours with an id the ledger does not know,
    # and a symlink pointing out of the dropzone (listed as a link, never followed).
    put(out, "foreign.csv", HOUR)
    ghost = export_filename(
        DraftRef("org-a", "D-ghost"), datetime(2026, 1, 1, tzinfo=UTC), str(uuid.uuid4())
    )
    put(out, ghost, HOUR)
    (Path(out) / "link.json").symlink_to("/etc/passwd")
    (Path(out) / "erp-archive").mkdir()  # the ERP's own folder: left alone
    # (c) a temp file of no row, 3 h old; and a fresh one (a publish in progress).
    orphan_temp = temp_filename(
        export_filename(
            DraftRef("org-a", "D-crash"), datetime(2026, 1, 1, tzinfo=UTC), str(uuid.uuid4())
        )
    )
    put(out, orphan_temp, 3 * HOUR)
    put(out, temp_filename(ghost.replace(".json", "x.json")), 60)
    # (d) PENDING of a finished run (never claimed), PENDING of a crashed run with its rename
    # claimed and the temp file still there (its evidence, not a stale temp), PENDING of a live run.
    finished = add_run(instance, dg.DagsterRunStatus.FAILURE)
    orphan_pending = row(
        ledger, config, "D-orphan", ExportStatus.PENDING, hours_ago=2, run_id=finished
    )
    crashed = add_run(instance, dg.DagsterRunStatus.FAILURE)
    orphan_claimed = row(
        ledger, config, "D-claimed", ExportStatus.PENDING, hours_ago=2, run_id=crashed, claimed=True
    )
    put(out, temp_filename(orphan_claimed.filename), 2 * HOUR)
    live = add_run(instance, dg.DagsterRunStatus.STARTED)
    live_pending = row(ledger, config, "D-live", ExportStatus.PENDING, hours_ago=2, run_id=live)
    # (e) SENT 3 h ago, file taken, no ack; and one whose ack waits in the ack folder (normal).
    unanswered = row(ledger, config, "D-unanswered", ExportStatus.SENT, hours_ago=3)
    answered = row(ledger, config, "D-answered", ExportStatus.SENT, hours_ago=3)
    zone.drop(config, "ack-answered.json", ack(answered.id))
    acked = row(ledger, config, "D-acked", ExportStatus.ACKED, hours_ago=30)
    return Scene(
        config,
        stale,
        fresh,
        ghost,
        orphan_temp,
        orphan_pending,
        orphan_claimed,
        live_pending,
        unanswered,
        answered,
        acked,
    )


def reconciler(
    ledger: SqlExportLedger,
    instance: dg.DagsterInstance,
    engine: Engine,
    tmp_path: Path,
    **settings: bool,
) -> Reconciler:
    service = ExportService(
        drafts=SqlDraftSource(engine),
        configs=SqlConnectorConfigs(engine),
        ledger=ledger,
        dropzones=PooledDropzoneConnector(),
        store=LocalExportStore(tmp_path / "store", "exports"),
        settings=ExportSettings(spool_dir=tmp_path / "spool"),
    )
    return Reconciler(
        ledger,
        DagsterRunLiveness(instance),
        ReconcileSettings(**settings),  # type: ignore[arg-type]
        settle=service.publisher.settle_unpublished,
    )


def tree(root: Path, folder_times: bool = True) -> dict[str, tuple[str, float | None]]:
    """Every entry under ``root`` (symlinks as links) with its kind and modification time.

    Without ``folder_times``, folders carry no time (removing a file changes its folder's).
    """
    listing = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        moment = None if kind == "dir" and not folder_times else info.st_mtime
        listing[str(path.relative_to(root))] = (kind, moment)
    return listing


def rows(ledger: SqlExportLedger) -> list[ExportRecord]:
    return sorted(ledger.list(limit=1000), key=lambda r: r.id)


def by_kind(result: OrgReconciliation) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in result.findings:
        found.setdefault(finding.kind, set()).add(finding.subject)
    return found


def reconcile(rec: Reconciler, config: ConnectorConfig) -> OrgReconciliation:
    connector = PooledDropzoneConnector()
    try:
        return rec.reconcile_org(config, connector)
    finally:
        connector.close()


def test_every_mismatch_class_is_reported_and_read_only_changes_nothing(
    zone: Zone,
    ledger: SqlExportLedger,
    instance: dg.DagsterInstance,
    engine: Engine,
    tmp_path: Path,
) -> None:
    scene = build_scene(zone, ledger, instance)
    before_tree, before_rows = tree(zone.root), rows(ledger)

    result = reconcile(reconciler(ledger, instance, engine, tmp_path), scene.config)

    assert by_kind(result) == {
        "stale_file": {scene.stale.filename},
        "unknown_file": {"foreign.csv", scene.foreign_like_ours, "link.json"},
        "temp_left": {scene.orphan_temp},
        "pending_orphaned": {scene.orphan_pending.id, scene.orphan_claimed.id},
        "sent_unanswered": {scene.unanswered.id},
    }
    assert result.reconciled and result.ack_files_read == 1
    stale = next(f for f in result.findings if f.kind == "stale_file")
    assert stale.partition_key == "org-a:D-stale"
    assert stale.age_seconds is not None and stale.age_seconds > 9 * HOUR
    assert "not picking files up" in stale.next_step
    link = next(f for f in result.findings if f.subject == "link.json")
    assert "symlink" in link.detail
    unanswered = next(f for f in result.findings if f.kind == "sent_unanswered")
    assert unanswered.draft_order_id == "D-unanswered" and "ACK_TIMEOUT in" in unanswered.detail
    assert all(f.fixed is None for f in result.findings)
    # Read-only: every file, link, folder and modification time, and every row, as before.
    assert tree(zone.root) == before_tree
    assert rows(ledger) == before_rows


def test_fix_mode_removes_only_reported_temps_and_settles_only_orphans(
    zone: Zone,
    ledger: SqlExportLedger,
    instance: dg.DagsterInstance,
    engine: Engine,
    tmp_path: Path,
) -> None:
    scene = build_scene(zone, ledger, instance)
    before_tree, before_rows = tree(zone.root, False), {r.id: r for r in rows(ledger)}
    out = Path(scene.config.export_path)

    result = reconcile(
        reconciler(
            ledger,
            instance,
            engine,
            tmp_path,
            remove_stale_temps=True,
            settle_orphaned_pending=True,
        ),
        scene.config,
    )

    fixed = {f.subject: f.fixed for f in result.findings if f.fixed}
    assert fixed == {
        scene.orphan_temp: "removed",
        # Rename never issued: the right is taken from the dead run, FAILED.
        scene.orphan_pending.id: "settled: failed, now FAILED",
        # Rename issued and its temp still there: the temp is removed, FAILED.
        scene.orphan_claimed.id: "settled: failed, now FAILED",
    }
    after = {r.id: r for r in rows(ledger)}
    for settled in (scene.orphan_pending, scene.orphan_claimed):
        assert (after[settled.id].status, after[settled.id].error_code) == (
            ExportStatus.FAILED,
            ErrorCode.INTERRUPTED,
        )
        assert after[settled.id].error_message is not None
        assert after[settled.id].error_message.endswith("(transient)")
    untouched = set(before_rows) - {scene.orphan_pending.id, scene.orphan_claimed.id}
    assert {i: after[i] for i in untouched} == {i: before_rows[i] for i in untouched}
    # Files: exactly the orphan temp file and the settled row's temp file are gone.
    removed = {
        scene.orphan_temp,
        temp_filename(scene.orphan_claimed.filename),
    }
    expected_tree = {
        k: v for k, v in before_tree.items() if not any(k.endswith("/" + n) for n in removed)
    }
    assert tree(zone.root, False) == expected_tree
    assert (out / "foreign.csv").exists() and (out / scene.stale.filename).exists()
    assert (Path(scene.config.ack_path) / "ack-answered.json").exists()


def test_a_pending_row_whose_file_landed_is_settled_as_sent(
    zone: Zone,
    ledger: SqlExportLedger,
    instance: dg.DagsterInstance,
    engine: Engine,
    tmp_path: Path,
) -> None:
    config = zone.config("org-a")
    dead = add_run(instance, dg.DagsterRunStatus.CANCELED)
    landed = row(ledger, config, "D-landed", ExportStatus.PENDING, hours_ago=1, run_id=dead)
    put(config.export_path, landed.filename, HOUR)

    read_only = reconcile(reconciler(ledger, instance, engine, tmp_path), config)
    assert by_kind(read_only) == {"pending_orphaned": {landed.id}}  # not also an unknown file
    result = reconcile(
        reconciler(ledger, instance, engine, tmp_path, settle_orphaned_pending=True), config
    )

    [finding] = result.findings
    assert finding.fixed == "settled: landed, now SENT"
    settled = ledger.get(landed.id)
    assert settled is not None and settled.status is ExportStatus.SENT
    assert (Path(config.export_path) / landed.filename).exists()


def test_one_unreachable_org_is_a_finding_and_the_others_still_reconcile(
    zone: Zone,
    ledger: SqlExportLedger,
    instance: dg.DagsterInstance,
    engine: Engine,
    tmp_path: Path,
) -> None:
    good = zone.config("org-a")
    stale = row(ledger, good, "D-1", ExportStatus.SENT, hours_ago=10)
    put(good.export_path, stale.filename, 10 * HOUR)
    broken = zone.config("org-b")
    if zone.sshd is not None:
        broken = zone.sshd.connector_config(
            "org-b",
            broken.export_path,
            broken.ack_path,
            port=1,  # nothing listens there
        )
    else:
        Path(broken.export_path).rmdir()  # its export folder is gone
    gone_ack = zone.config("org-c")
    Path(gone_ack.ack_path).rmdir()
    third = row(ledger, gone_ack, "D-3", ExportStatus.SENT, hours_ago=3)

    results = reconciler(ledger, instance, engine, tmp_path).reconcile_all(
        [broken, good, gone_ack], PooledDropzoneConnector
    )

    assert [r.org_id for r in results] == ["org-a", "org-b", "org-c"]
    a, b, c = results
    assert by_kind(a) == {"stale_file": {stale.filename}} and a.reconciled
    assert [f.kind for f in b.findings] == ["not_reconciled"] and not b.reconciled
    # An unreadable ack folder: no SENT row may be called unanswered (its ack may be there).
    assert by_kind(c) == {"not_reconciled": {gone_ack.ack_path}}
    assert ledger.get(third.id) == third


def test_a_refused_connector_is_not_listed(
    zone: Zone,
    ledger: SqlExportLedger,
    instance: dg.DagsterInstance,
    engine: Engine,
    tmp_path: Path,
) -> None:
    first = zone.config("org-a")
    put(first.export_path, "foreign.csv", HOUR)
    # A later row pointing at org-a's export folder: refused, org-a's folder is not its to read.
    intruder = ConnectorConfig(
        **{
            **{k: getattr(first, k) for k in ("transport", "host", "port", "username")},
            "org_id": "org-z",
            "export_path": first.export_path,
            "ack_path": str(Path(first.ack_path).parent / "z-acks"),
            "host_key": first.host_key,
            "private_key_ref": zone.sshd.key_ref("org-z") if zone.sshd else None,
            "updated_at": datetime.now(UTC),
        }
    )
    first = ConnectorConfig(
        **{**first.__dict__, "updated_at": datetime.now(UTC) - timedelta(days=1)}
    )

    results = reconciler(ledger, instance, engine, tmp_path).reconcile_all(
        [first, intruder], PooledDropzoneConnector
    )

    a, z = results
    assert by_kind(a) == {"unknown_file": {"foreign.csv"}}
    [refused] = z.findings
    assert refused.kind == "not_reconciled" and "refused" in refused.detail
    assert json.dumps(refused.detail)  # plain text, safe to put in metadata
