"""erp_export on SQLite and PostgreSQL beyond the ledger contract: migrations, concurrent
inserts, connector configs, the 0006 upgrade (the ledger itself: contracts/test_ledger_contract).
"""

import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect

from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.engine import (
    SchemaNotReady,
    current_revision,
    head_revision,
    make_engine,
    require_current_schema,
    upgrade_schema,
)
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.domain.errors import AlreadyInFlight
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig, NewExport

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
REF = DraftRef("acme", "D-1")


def new_export(attempt: int = 1, ref: DraftRef = REF, **overrides: object) -> NewExport:
    values: dict = dict(
        id=str(uuid.uuid4()),
        ref=ref,
        attempt=attempt,
        filename=f"{ref.org_id}_{ref.draft_order_id}_x.json",
        dropzone_path="/dz/x.json",
        storage_key="exports/acme/D-1/x.json",
        content_sha256="0" * 64,
        byte_size=10,
        line_count=1,
        forced=False,
        dagster_run_id="run-1",
        created_at=NOW,
    )
    values.update(overrides)
    return NewExport(**values)


def test_migrations_create_our_tables_and_the_partial_unique_index(engine: Engine) -> None:
    inspector = inspect(engine)
    assert {"erp_export", "erp_connector_config", "alembic_version"} <= set(
        inspector.get_table_names()
    )
    indexes = {ix["name"]: ix for ix in inspector.get_indexes("erp_export")}
    assert indexes["uq_erp_export_one_active_per_draft"]["unique"]
    assert current_revision(engine) == head_revision()
    upgrade_schema(engine)  # idempotent
    require_current_schema(engine)


def test_unmigrated_database_is_refused_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaNotReady, match="orderflow-exports db upgrade"):
        require_current_schema(engine)


def test_concurrent_inserts_for_one_draft_leave_exactly_one_active_row(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            ledger.create_pending(new_export(1, id=str(uuid.uuid4()), dagster_run_id=f"r{n}"))
            outcomes.append("inserted")
        except AlreadyInFlight:
            outcomes.append("in flight")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["in flight"] * 3 + ["inserted"]
    active = [r for r in ledger.list(org_id="acme") if r.status.is_active]
    assert len(active) == 1


def test_connector_configs_round_trip(engine: Engine) -> None:
    configs = SqlConnectorConfigs(engine)
    sftp = ConnectorConfig(
        org_id="acme",
        transport="sftp",
        export_path="/in",
        ack_path="/out",
        host="h",
        port=2222,
        username="u",
        host_key="SHA256:abc",
        private_key_ref="env:KEY",
    )
    configs.upsert(sftp)
    configs.upsert(
        ConnectorConfig(
            org_id="off", transport="local", export_path="/a", ack_path="/b", enabled=False
        )
    )
    assert configs.get("acme") == sftp
    assert [c.org_id for c in configs.list(enabled_only=True)] == ["acme"]
    assert [c.org_id for c in configs.list()] == ["acme", "off"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"transport": "ftp"}, "transport"),
        ({"transport": "sftp"}, "needs host"),
        ({"private_key_ref": "AAAA-the-key-itself"}, "env:"),
        ({"org_id": "a/b"}, "not allowed"),
    ],
)
def test_connector_config_rejects_unsafe_values(kwargs: dict, message: str) -> None:
    values = {"org_id": "acme", "transport": "local", "export_path": "/a", "ack_path": "/b"}
    with pytest.raises(ValueError, match=message):
        ConnectorConfig(**{**values, **kwargs})


def test_upgrading_to_0006_reads_transience_from_the_message_and_the_code(
    database_url: str,
) -> None:
    """Rows written before the column existed: the suffix of their message, else their code."""
    from sqlalchemy import text

    engine = make_engine(database_url)
    try:
        upgrade_schema(engine, "0005")
        rows = {
            "t": ("IO", "[IO] read failed (transient)"),
            "p": ("ARCHIVE", "[ARCHIVE] NoSuchBucket (permanent)"),
            "c": ("CONNECTION", "[CONNECTION] refused"),
            "r": ("ERP_REJECTED", "the ERP said no"),
            "u": ("IO", "[IO] something, no suffix"),
        }
        with engine.begin() as conn:
            for attempt, (key, (code, message)) in enumerate(rows.items(), start=1):
                conn.execute(
                    text(
                        "INSERT INTO erp_export (id, org_id, draft_order_id, connector_type, "
                        "attempt, status, filename, dropzone_path, storage_key, content_sha256, "
                        "byte_size, line_count, forced, error_code, error_message, created_at, "
                        "updated_at) VALUES (:id, 'acme', 'D-1', 'DROPZONE_JSON_V1', :attempt, "
                        "'FAILED', 'f.json', '/dz/f.json', 'k', :sha, 1, 1, false, :code, "
                        ":message, :at, :at)"
                    ),
                    {
                        "id": key,
                        "attempt": attempt,
                        "sha": "0" * 64,
                        "code": code,
                        "message": message,
                        "at": NOW,
                    },
                )
        upgrade_schema(engine)
        assert current_revision(engine) == head_revision() == "0006"
        ledger = SqlExportLedger(engine)
        found = {key: ledger.get(key) for key in rows}
        assert {k: r.error_transient for k, r in found.items() if r is not None} == {
            "t": True,
            "p": False,
            "c": True,
            "r": False,
            "u": None,
        }
    finally:
        engine.dispose()
