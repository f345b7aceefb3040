"""Static proof that every fake implements its port: mypy checks these assignments."""

from __future__ import annotations

from orderflow_exports.domain.ports import (
    ConnectorConfigs,
    DraftSource,
    DropzoneConnector,
    DropzoneSession,
    ExportLedger,
    ExportPartitions,
    ExportRequests,
    ExportStore,
    KnownPartitions,
    RunFailures,
    RunLiveness,
)
from orderflow_exports_tests.fakes.dropzone import FakeDropzone, FakeDropzoneSession
from orderflow_exports_tests.fakes.ledger import FakeLedger
from orderflow_exports_tests.fakes.partitions import FakeExportPartitions, FakeKnownPartitions
from orderflow_exports_tests.fakes.requests import FakeExportRequests
from orderflow_exports_tests.fakes.sources import (
    FakeConnectorConfigs,
    FakeDraftSource,
    FakeRunFailures,
    FakeRunLiveness,
)
from orderflow_exports_tests.fakes.store import FakeExportStore


def _conforms() -> None:
    zone = FakeDropzone()
    ledger: ExportLedger = FakeLedger()
    connector: DropzoneConnector = zone
    session: DropzoneSession = FakeDropzoneSession(zone)
    store: ExportStore = FakeExportStore()
    drafts: DraftSource = FakeDraftSource()
    configs: ConnectorConfigs = FakeConnectorConfigs()
    liveness: RunLiveness = FakeRunLiveness()
    failures: RunFailures = FakeRunFailures()
    requests: ExportRequests = FakeExportRequests()
    partitions: ExportPartitions = FakeExportPartitions()
    known: KnownPartitions = FakeKnownPartitions()
    del ledger, connector, session, store, drafts, configs, liveness, failures, requests
    del partitions, known
