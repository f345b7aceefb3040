"""Large exports stream and batches share connections (issue 7). Nothing here is timed.

- A 50k-line export keeps its peak traced memory (tracemalloc) under a fixed bound, measured in the
  same test as a whole-document build of the same draft, which breaks that bound; on PostgreSQL the
  lines also come through a server-side cursor.
- The sensor's run request over N new partitions is one run that exports all N.
- One run over many partitions opens one SFTP connection per dropzone endpoint, not one per
  draft or per org.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import paramiko
import pytest
from sqlalchemy import Engine, event

from orderflow_exports import defs
from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.application.archive import archive_outcome
from orderflow_exports.application.export_service import ExportService
from orderflow_exports.application.publishing import ExportSettings
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.sensors import approved_drafts_sensor
from orderflow_exports.demo import SampleDraft, insert_drafts, local_connector
from orderflow_exports.domain.document import (
    ExportDocument,
    Totals,
    build_header,
    build_line,
    fixed,
    parse_document,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.sshd import SshdServer

MiB = 1024 * 1024
BIG_LINES = 50_000
# Peak traced memory an export may use however many lines it has: a chunk of lines being
# written, the database driver's fetch buffer, a 1 MiB copy buffer. Less than the document itself.
STREAMING_BOUND = 8 * MiB

log = logging.getLogger(__name__)


def _peak_traced(work: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes traced by tracemalloc while ``work`` runs, above what was live before it."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = work()
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    return peak, result


@dataclass
class _LineQueries:
    """Cursor classes the line query ran on, recorded by a SQLAlchemy engine event."""

    cursors: list[str]


@pytest.fixture
def line_queries(engine: Engine) -> Iterator[_LineQueries]:
    seen = _LineQueries(cursors=[])

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT DRAFT_ORDER_LINE.LINE_NO"):
            seen.cursors.append(f"{type(cursor).__module__}.{type(cursor).__name__}")

    event.listen(engine, "before_cursor_execute", before)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


def _service(engine: Engine, root: Path) -> tuple[ExportService, LocalExportStore]:
    store = LocalExportStore(root / "store")
    service = ExportService(
        drafts=SqlDraftSource(engine),
        configs=SqlConnectorConfigs(engine),
        ledger=SqlExportLedger(engine),
        dropzones=PooledDropzoneConnector(),
        store=store,
        settings=ExportSettings(spool_dir=root / "spool"),
        log=log,
    )
    return service, store


def test_a_50k_line_export_streams_in_bounded_memory(
    engine: Engine, tmp_path: Path, line_queries: _LineQueries
) -> None:
    SqlConnectorConfigs(engine).upsert(local_connector("acme", tmp_path / "dropzones"))
    insert_drafts(
        engine, [SampleDraft("acme", "WARM", lines=20), SampleDraft("acme", "BIG", lines=BIG_LINES)]
    )
    service, store = _service(engine, tmp_path)
    drafts = SqlDraftSource(engine)

    def export(draft_id: str) -> Any:
        ref = DraftRef("acme", draft_id)
        outcome = service.export(ref)
        archive_outcome(store, ref, outcome, log)
        return outcome

    # Warm-up: lazy imports, compiled-statement caches and pool connections are not the export's.
    export("WARM")
    streaming_peak, outcome = _peak_traced(lambda: export("BIG"))

    record = outcome.record
    assert outcome.action == "sent" and record.status is ExportStatus.SENT
    assert record == SqlExportLedger(engine).get(record.id)  # the row as stored, not a guess
    assert record.line_count == BIG_LINES
    published = Path(record.dropzone_path).read_bytes()
    assert len(published) == record.byte_size
    assert Path(record.storage_key).read_bytes() == published
    document = parse_document(published)
    assert len(document.lines) == BIG_LINES and document.lines[-1].line_no == BIG_LINES

    def whole_document() -> bytes:
        # What a non-streaming exporter does: every line in memory, one model, one dump.
        ref = DraftRef("acme", "BIG")
        draft = drafts.get_draft(ref)
        assert draft is not None
        header = build_header(
            draft, export_id=record.id, attempt=record.attempt, created_at=record.created_at
        )
        built = [build_line(line) for line in drafts.iter_lines(ref)]
        net = sum((total for _, total in built), start=Decimal(0))
        return (
            ExportDocument(
                export=header.export,
                org_id=header.org_id,
                order=header.order,
                lines=[line for line, _ in built],
                totals=Totals(
                    line_count=len(built), net_amount=fixed(net, 2), currency=header.order.currency
                ),
            )
            .model_dump_json()
            .encode()
        )

    whole_peak, whole = _peak_traced(whole_document)

    # The same document either way (the streaming writer only adds line breaks between lines).
    assert parse_document(whole) == document
    # The bound is meaningful: the whole-document build and even the bare document exceed it.
    assert record.byte_size > STREAMING_BOUND
    assert whole_peak > STREAMING_BOUND, f"whole-document build peaked at {whole_peak / MiB:.1f}"
    assert streaming_peak < STREAMING_BOUND, (
        f"streaming export peaked at {streaming_peak / MiB:.1f} MiB of traced memory "
        f"(whole-document build: {whole_peak / MiB:.1f} MiB)"
    )
    # On PostgreSQL the lines come through a server-side (named) cursor, fetched in chunks:
    # a client-side cursor would hold the whole result in libpq, where tracemalloc cannot see it.
    if engine.dialect.name == "postgresql":
        assert line_queries.cursors, "the line query was not seen"
        assert all(c == "psycopg.ServerCursor" for c in line_queries.cursors), line_queries.cursors


def _evaluate_sensor(env: OrderflowEnv) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=env.instance, resources={"database": DatabaseResource()}, definitions=defs
    ) as context:
        return approved_drafts_sensor(context)


def _exported_partitions(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(
        str(e.partition)
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("export_json")
    )


def test_the_sensors_run_request_is_one_run_over_all_new_partitions(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex")
    samples = [SampleDraft(("acme", "globex")[n % 2], f"D-{n:03d}", lines=3) for n in range(12)]
    keys = env.add_drafts(*samples, partitions=False)

    result = _evaluate_sensor(env)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    [add] = result.dynamic_partitions_requests or []
    env.add_partitions(add.partition_keys)  # what the daemon does with the request
    # Run the request as the daemon would launch it: its tags select the partition range.
    job = defs.resolve_job_def("export_drafts_job")
    run = job.execute_in_process(
        instance=env.instance, tags=request.tags, partition_key=request.partition_key
    )

    assert run.success
    assert len(env.instance.get_run_records()) == 1
    assert _exported_partitions(run) == sorted(keys)
    for key in keys:
        [row] = env.exports(key)
        assert row.status is ExportStatus.SENT and row.dagster_run_id == run.run_id


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts SSH handshakes (TCP connections) and SFTP sessions opened in this test."""
    import orderflow_exports.adapters.sftp.session as sftp_session

    counts = {"ssh_handshakes": 0, "sftp_sessions": 0}
    start_client = paramiko.Transport.start_client
    open_session = sftp_session.open_sftp_session

    def counting_start_client(self: paramiko.Transport, *args: Any, **kwargs: Any) -> Any:
        counts["ssh_handshakes"] += 1
        return start_client(self, *args, **kwargs)

    def counting_open_session(*args: Any, **kwargs: Any) -> Any:
        counts["sftp_sessions"] += 1
        return open_session(*args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "start_client", counting_start_client)
    monkeypatch.setattr(sftp_session, "open_sftp_session", counting_open_session)
    return counts


def test_a_batch_opens_one_sftp_connection_per_endpoint(
    orderflow_env: OrderflowEnv,
    sshd_server: SshdServer,
    tmp_path: Path,
    connections: dict[str, int],
) -> None:
    env = orderflow_env
    # acme and globex share an endpoint but not a login (each org's secret reference is scoped
    # to it); initech reaches the same server under another host name, another endpoint as far
    # as the exporter knows. One connection each, however many drafts.
    hosts = {"acme": "127.0.0.1", "globex": "127.0.0.1", "initech": "localhost"}
    base = sshd_server.root / tmp_path.name
    for org, host in hosts.items():
        outbox, acks = base / org / "outbox", base / org / "acks"
        outbox.mkdir(parents=True)
        acks.mkdir(parents=True)
        env.configs.upsert(sshd_server.connector_config(org, str(outbox), str(acks), host=host))
    orgs = list(hosts)
    keys = env.add_drafts(
        *(SampleDraft(orgs[n % 3], f"S-{n:03d}", lines=2) for n in range(12)),
    )

    run = env.run_export(keys)

    assert run.success
    assert _exported_partitions(run) == sorted(keys)
    assert connections == {"ssh_handshakes": 3, "sftp_sessions": 3}
    for key in keys:
        [row] = env.exports(key)
        assert row.status is ExportStatus.SENT
        assert Path(row.dropzone_path).stat().st_size == row.byte_size
    for org in orgs:
        assert len(list((base / org / "outbox").iterdir())) == 4
