"""The demo: embedded defaults (SQLite, local folders), two orgs, a handful of drafts, the real job.

Also home of the sample-data builders the tests use. Everything written to ``draft_order`` and
``draft_order_line`` here is OrderFlow core's data, created only because there is no OrderFlow
core on a laptop; production never runs this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from orderflow_exports.adapters.sql.engine import create_core_tables_for_demo, upgrade_schema
from orderflow_exports.adapters.sql.tables import draft_order, draft_order_line
from orderflow_exports.domain.records import ConnectorConfig

DEMO_APPROVED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class SampleDraft:
    """A draft to insert into OrderFlow core's tables (demo and tests only)."""

    org_id: str
    draft_id: str
    lines: int = 3
    status: str = "APPROVED"
    customer_name: str = "Müller & Söhne GmbH"
    zero_price_line: int | None = None
    approved_at: datetime = DEMO_APPROVED_AT
    currency: str = "EUR"


def draft_row(sample: SampleDraft) -> dict[str, Any]:
    return {
        "id": sample.draft_id,
        "org_id": sample.org_id,
        "status": sample.status,
        "customer_po_number": f"PO-{sample.draft_id}",
        "customer_erp_number": "C-10077",
        "customer_name": sample.customer_name,
        "order_date": date(2026, 11, 19),
        "requested_delivery_date": date(2026, 12, 3),
        "currency": sample.currency,
        "ship_to": {
            "name": "Müller & Söhne GmbH – Lager Süd",
            "street": "Hauptstraße 5",
            "postal_code": "80331",
            "city": "München",
            "country": "DE",
        },
        "notes": "Rampe 3 — bitte avisieren",
        "approved_at": sample.approved_at if sample.status == "APPROVED" else None,
        "updated_at": sample.approved_at,
    }


def line_rows(sample: SampleDraft) -> Iterable[dict[str, Any]]:
    for n in range(1, sample.lines + 1):
        zero = sample.zero_price_line == n
        yield {
            "id": f"{sample.draft_id}-L{n}",
            "draft_order_id": sample.draft_id,
            "line_no": n,
            "erp_item_number": f"ITEM-{n:05d}",
            "customer_item_number": None if n % 3 == 0 else f"CUST-{n}",
            "description": f"Schraube M{4 + n % 8} × {10 + n % 40} mm, verzinkt",
            "quantity": Decimal("1.2345") * n if n % 4 == 1 else Decimal(n % 7 + 1),
            "uom": "PCE",
            "unit_price": Decimal(0) if zero else Decimal("0.3333") + Decimal(n % 100),
            "requested_delivery_date": None if n % 2 else date(2026, 12, 3),
        }


def insert_drafts(engine: Engine, samples: Sequence[SampleDraft], batch: int = 5000) -> None:
    """Insert sample drafts into core's tables (NOT OURS: demo and tests only)."""
    if not samples:
        return
    with engine.begin() as conn:
        conn.execute(insert(draft_order), [draft_row(s) for s in samples])
        for sample in samples:
            pending: list[dict[str, Any]] = []
            for row in line_rows(sample):
                pending.append(row)
                if len(pending) >= batch:
                    conn.execute(insert(draft_order_line), pending)
                    pending = []
            if pending:
                conn.execute(insert(draft_order_line), pending)


def prepare_database(engine: Engine) -> None:
    """Our migrations, plus core's tables for the demo (NOT OURS)."""
    upgrade_schema(engine)
    create_core_tables_for_demo(engine)


def local_connector(org_id: str, root: Path) -> ConnectorConfig:
    outbox, acks = root / org_id / "outbox", root / org_id / "acks"
    outbox.mkdir(parents=True, exist_ok=True)
    acks.mkdir(parents=True, exist_ok=True)
    return ConnectorConfig(
        org_id=org_id,
        transport="local",
        export_path=str(outbox),
        ack_path=str(acks),
        ack_deadline_seconds=int(timedelta(hours=24).total_seconds()),
    )


DEMO_DRAFTS = (
    SampleDraft("acme", "D-1001", lines=3),
    SampleDraft("acme", "D-1002", lines=500),
    SampleDraft("acme", "D-1003", lines=4, zero_price_line=2),
    SampleDraft("acme", "D-1004", lines=2, status="DRAFT"),
    SampleDraft("globex", "G-2001", lines=5, customer_name="Globex Ibérica S.L."),
    SampleDraft("globex", "G-2002", lines=1, customer_name="Åkesson AB"),
)


_QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _instance_home() -> Path:
    import dagster as dg

    from orderflow_exports.defs.settings import data_home

    configured = dg.EnvVar("DAGSTER_HOME").get_value()
    return Path(configured) if configured else data_home() / "dagster_home"


DEMO_REJECTED_DRAFT = "D-1003"


def run_demo(emit: Any) -> int:
    """The whole loop on the embedded defaults: export, the simulated ERP's acks, the ack pass.

    Drafts whose latest export FAILED are left alone (a person re-sends them, with the command
    printed), so running the demo again sends nothing twice.
    """
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from orderflow_exports import defs
    from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.adapters.sql.drafts import SqlDraftSource
    from orderflow_exports.adapters.sql.engine import make_engine
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME
    from orderflow_exports.defs.settings import data_home, resolve_database_url
    from orderflow_exports.domain.naming import DraftRef
    from orderflow_exports.domain.status import ExportStatus
    from orderflow_exports.erp_sim.decisions import Policy
    from orderflow_exports.erp_sim.simulator import TAKEN, ErpSimulator

    url = resolve_database_url(None)
    engine = make_engine(url)
    prepare_database(engine)
    configs = SqlConnectorConfigs(engine)
    for org_id in ("acme", "globex"):
        if configs.get(org_id) is None:
            configs.upsert(local_connector(org_id, data_home() / "dropzones"))
    drafts = SqlDraftSource(engine)
    missing = [s for s in DEMO_DRAFTS if drafts.get_draft(DraftRef(s.org_id, s.draft_id)) is None]
    insert_drafts(engine, missing)
    emit(f"database: {engine.url.render_as_string(hide_password=True)}")
    ledger = SqlExportLedger(engine)

    def latest_failed(sample: SampleDraft) -> bool:
        latest = ledger.latest(DraftRef(sample.org_id, sample.draft_id))
        return latest is not None and latest.status is ExportStatus.FAILED

    home = _instance_home()
    home.mkdir(parents=True, exist_ok=True)
    approved = [s for s in DEMO_DRAFTS if s.status == "APPROVED"]
    keys = [f"{s.org_id}:{s.draft_id}" for s in approved if not latest_failed(s)]
    succeeded = True
    with dg.DagsterInstance.from_config(str(home)) as instance:
        known = instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME)
        new = [k for k in keys if k not in known]
        if new:
            instance.add_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME, new)
        ordered = instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME)
        job = defs.resolve_job_def("export_drafts_job")
        emit("")
        emit("1. export: export_drafts_job over the approved drafts")
        # One run per range of consecutive partitions (a range tag covers every key between).
        batches: list[list[str]] = []
        position = {k: i for i, k in enumerate(ordered)}
        for key in sorted(keys, key=position.__getitem__):
            if batches and position[batches[-1][-1]] + 1 == position[key]:
                batches[-1].append(key)
            else:
                batches.append([key])
        for batch in batches:
            tags = {
                "dagster/asset_partition_range_start": batch[0],
                "dagster/asset_partition_range_end": batch[-1],
            }
            result = job.execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, run_config=_QUIET_RUN
            )
            emit(f"   dagster run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
            succeeded = succeeded and result.success

        emit("")
        emit(
            "2. the simulated ERP (orderflow-exports erp-sim --once): takes the orders, answers "
            f"in the ack folders; it rejects {DEMO_REJECTED_DRAFT}"
        )
        simulator = ErpSimulator(
            lambda: configs.list(enabled_only=True),
            PooledDropzoneConnector(),
            Policy(reject_drafts=frozenset({DEMO_REJECTED_DRAFT})),
        )
        simulator.run(interval=0.1, once=True)
        stats = simulator.stats
        emit(
            f"   took {stats.taken}, accepted {stats.accepted}, rejected {stats.rejected}, "
            f"org errors {stats.org_errors}"
        )

        emit("")
        emit("3. the ack pass: process_acks_job (the daemon runs it as erp_ack_sensor)")
        acks = defs.resolve_job_def("process_acks_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=_QUIET_RUN
        )
        emit(f"   dagster run {acks.run_id}: {'SUCCESS' if acks.success else 'FAILURE'}")
        succeeded = succeeded and acks.success and stats.org_errors == 0
    emit(f"   dagster instance: {home}")
    emit("")
    for config in configs.list():
        taken = Path(config.export_path) / TAKEN
        emit(f"taken by the ERP from {config.org_id}'s dropzone: {taken}")
        for name in sorted(p.name for p in taken.glob("*.json")):
            emit(f"  {name}")
    emit("")
    from orderflow_exports.cli.export_views import format_exports

    emit(
        format_exports(
            ledger.list(limit=1000), ack_paths={c.org_id: c.ack_path for c in configs.list()}
        )
    )
    return 0 if succeeded else 1
