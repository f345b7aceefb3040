"""The fakes wired together as one ``ExportService`` run sees them, for the use-case tests.

:class:`ExportPorts` holds every port once; each ``run()`` builds a new service over them, as
each Dagster run of ``export_json`` does, so several runs can meet over the same ledger and
dropzone. Ids and the clock are deterministic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orderflow_exports.application.export_service import ExportService
from orderflow_exports.application.publishing import ExportSettings
from orderflow_exports.domain.naming import DraftRef, export_filename
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.dropzone import FakeDropzone
from orderflow_exports_tests.fakes.ledger import FakeLedger
from orderflow_exports_tests.fakes.sources import (
    FakeConnectorConfigs,
    FakeDraftSource,
    FakeRunLiveness,
)
from orderflow_exports_tests.fakes.store import FakeExportStore

START = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
REF = DraftRef("acme", "D-1")
OUTBOX = "/dz/acme/outbox"
LOCAL = ConnectorConfig(
    org_id="acme", transport="local", export_path=OUTBOX, ack_path="/dz/acme/acks"
)


def sftp_config(org_id: str, key_ref: str | None = None) -> ConnectorConfig:
    return ConnectorConfig(
        org_id=org_id,
        transport="sftp",
        export_path=f"/in/{org_id}",
        ack_path=f"/out/{org_id}",
        host="erp.example.com",
        port=22,
        username="orders",
        host_key="SHA256:x",
        private_key_ref=key_ref or f"env:ORDERFLOW_SECRET_{org_id.upper()}_KEY",
    )


class RecordingLog:
    """Keeps what the service logs, to check that a settled failure says what happened."""

    def __init__(self) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.infos.append(msg % args if args else msg)

    def warning(self, msg: str, *args: object) -> None:
        self.warnings.append(msg % args if args else msg)

    def error(self, msg: str, *args: object) -> None:
        self.errors.append(msg % args if args else msg)


@dataclass
class ExportPorts:
    """The ports runs are built on; ``run()`` builds one run's service over them."""

    spool: Path
    drafts: FakeDraftSource = field(default_factory=FakeDraftSource)
    configs: FakeConnectorConfigs = field(default_factory=FakeConnectorConfigs)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    zone: FakeDropzone = field(default_factory=FakeDropzone)
    store: FakeExportStore = field(default_factory=FakeExportStore)
    liveness: FakeRunLiveness = field(default_factory=FakeRunLiveness)
    log: RecordingLog = field(default_factory=RecordingLog)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    ticks: itertools.count[int] = field(default_factory=itertools.count)

    def clock(self) -> datetime:
        return START + timedelta(seconds=next(self.ticks))

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self.ids):012d}"

    def run(self) -> ExportService:
        return ExportService(
            drafts=self.drafts,
            configs=self.configs,
            ledger=self.ledger,
            dropzones=self.zone,
            store=self.store,
            settings=ExportSettings(spool_dir=self.spool),
            liveness=self.liveness,
            log=self.log,
            clock=self.clock,
            new_id=self.new_id,
        )

    def add(self, config: ConnectorConfig, *refs: DraftRef) -> None:
        self.configs.upsert(config)
        self.zone.make_folder(config.export_path)
        for ref in refs:
            self.drafts.add(ref)

    def final_files(self, folder: str = OUTBOX) -> list[str]:
        return [name for name in self.zone.names(folder) if not name.startswith(".")]

    def pending(self, ref: DraftRef = REF, *, run_id: str = "dead-run") -> ExportRecord:
        """A PENDING row left by another run, as a run that stopped mid-export leaves it."""
        export_id = self.new_id()
        latest = self.ledger.latest(ref)
        created = self.clock().replace(microsecond=0)
        filename = export_filename(ref, created, export_id)
        return self.ledger.create_pending(
            NewExport(
                id=export_id,
                ref=ref,
                attempt=1 if latest is None else latest.attempt + 1,
                filename=filename,
                dropzone_path=f"{OUTBOX}/{filename}",
                storage_key=f"memory://exports/{ref.org_id}/{ref.draft_order_id}/{export_id}.json",
                content_sha256="0" * 64,
                byte_size=3,
                line_count=1,
                forced=False,
                dagster_run_id=run_id,
                created_at=created,
            )
        )


def status_of(ports: ExportPorts, export_id: str) -> ExportStatus:
    row = ports.ledger.get(export_id)
    assert row is not None
    return row.status


def rows_of(ports: ExportPorts, ref: DraftRef = REF) -> list[ExportRecord]:
    return sorted((r for r in ports.ledger.rows() if r.ref == ref), key=lambda r: r.attempt)
