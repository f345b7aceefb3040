"""erp_export on SQLite and PostgreSQL: migrations, inserts, compare-and-set, concurrency."""

import threading
import uuid
from datetime import UTC, datetime, timedelta

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
from orderflow_exports.domain.status import ExportStatus

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


def test_pending_sent_acked_with_timestamps_in_utc(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    record = ledger.create_pending(new_export())
    assert record.status is ExportStatus.PENDING
    assert ledger.mark_sent(record.id, at=NOW + timedelta(seconds=1))
    assert ledger.mark_acked(
        record.id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=NOW + timedelta(hours=1)
    )
    stored = ledger.get(record.id)
    assert stored is not None
    assert stored.status is ExportStatus.ACKED
    assert stored.erp_order_number == "SO-1"
    assert stored.sent_at == NOW + timedelta(seconds=1)
    assert stored.acked_at is not None and stored.acked_at.tzinfo is not None


def test_replayed_and_stale_transitions_change_nothing(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    record = ledger.create_pending(new_export())
    assert ledger.mark_sent(record.id, at=NOW)
    assert not ledger.mark_sent(record.id, at=NOW + timedelta(days=1))  # replay
    assert ledger.mark_failed(
        record.id, expected=ExportStatus.SENT, code="ERP_REJECTED", message="no", at=NOW
    )
    # A late ACK for a FAILED export: compare-and-set on SENT finds nothing.
    assert not ledger.mark_acked(
        record.id, expected=(ExportStatus.PENDING, ExportStatus.SENT), erp_order_number="X", at=NOW
    )
    stored = ledger.get(record.id)
    assert stored is not None and stored.status is ExportStatus.FAILED
    assert stored.erp_order_number is None and stored.sent_at == NOW


def test_only_one_active_export_per_draft(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    first = ledger.create_pending(new_export(1))
    with pytest.raises(AlreadyInFlight, match="already in flight"):
        ledger.create_pending(new_export(2))
    ledger.mark_sent(first.id, at=NOW)
    with pytest.raises(AlreadyInFlight):
        ledger.create_pending(new_export(2))
    ledger.mark_failed(first.id, expected=ExportStatus.SENT, code="X", message="x", at=NOW)
    second = ledger.create_pending(new_export(2))
    assert ledger.latest(REF) == second
    # Other drafts are independent.
    ledger.create_pending(new_export(1, ref=DraftRef("acme", "D-2")))
    ledger.create_pending(new_export(1, ref=DraftRef("globex", "D-1")))


def test_forced_attempt_supersedes_a_sent_export_atomically(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    first = ledger.create_pending(new_export(1))
    ledger.mark_sent(first.id, at=NOW)
    forced = ledger.create_pending(new_export(2, forced=True), supersede=first.id)
    old = ledger.get(first.id)
    assert old is not None and old.status is ExportStatus.FAILED
    assert old.error_code == "SUPERSEDED" and forced.id in (old.error_message or "")
    assert old.error_transient is False  # a superseded row is never tried again
    assert forced.forced and forced.status is ExportStatus.PENDING


def test_superseding_goes_through_the_status_machine_and_the_compare_and_set(
    engine: Engine,
) -> None:
    ledger = SqlExportLedger(engine)
    first = ledger.create_pending(new_export(1))
    assert ledger.mark_sent(first.id, at=NOW)
    assert ledger.mark_acked(first.id, expected=ExportStatus.SENT, erp_order_number=None, at=NOW)
    # The row is ACKED now, not SENT: superseding it changes nothing and inserts nothing.
    with pytest.raises(AlreadyInFlight, match="changed while forcing"):
        ledger.create_pending(new_export(2, forced=True), supersede=first.id)
    assert [r.attempt for r in ledger.list(org_id=REF.org_id)] == [1]
    stored = ledger.get(first.id)
    assert stored is not None and stored.status is ExportStatus.ACKED


@pytest.mark.parametrize(
    ("code", "given", "stored"),
    [
        ("CONNECTION", None, True),  # the code decides
        ("AUTH", None, False),
        ("ERP_REJECTED", None, False),
        ("ARCHIVE", True, True),  # the cause decides: the raiser's word is kept
        ("ARCHIVE", False, False),
        ("IO", None, None),  # not said and not fixed by the code: unknown
        ("SOMETHING_NEW", None, None),
    ],
)
def test_whether_a_failure_may_pass_is_stored_beside_its_code(
    engine: Engine, code: str, given: bool | None, stored: bool | None
) -> None:
    ledger = SqlExportLedger(engine)
    record = ledger.create_pending(new_export())
    assert ledger.mark_failed(
        record.id,
        expected=ExportStatus.PENDING,
        code=code,
        message="x" * 5000,  # longer than the message column keeps
        at=NOW,
        transient=given,
    )
    row = ledger.get(record.id)
    assert row is not None and row.error_code == code and row.error_transient is stored
    assert len(row.error_message or "") == 4000


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


def test_list_filters_and_deadline_query(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    a = ledger.create_pending(new_export(1, ref=DraftRef("acme", "A")))
    b = ledger.create_pending(new_export(1, ref=DraftRef("acme", "B")))
    g = ledger.create_pending(new_export(1, ref=DraftRef("globex", "G")))
    ledger.mark_sent(a.id, at=NOW - timedelta(days=2))
    ledger.mark_sent(b.id, at=NOW)
    ledger.mark_sent(g.id, at=NOW - timedelta(days=2))
    assert [r.id for r in ledger.sent_before("acme", NOW - timedelta(days=1), 10)] == [a.id]
    assert {r.id for r in ledger.list(org_id="acme", status=ExportStatus.SENT)} == {a.id, b.id}
    assert ledger.list(org_id="nobody") == []


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


def test_a_move_the_status_machine_forbids_is_refused_before_the_database(
    engine: Engine,
) -> None:
    ledger = SqlExportLedger(engine)
    record = ledger.create_pending(new_export())
    with pytest.raises(ValueError, match="from ACKED to FAILED"):
        ledger.mark_failed(record.id, expected=ExportStatus.ACKED, code="X", message="x", at=NOW)
    stored = ledger.get(record.id)
    assert stored is not None and stored.status is ExportStatus.PENDING


def test_the_rename_right_is_taken_once_and_never_after_the_row_moved(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)
    stalled = ledger.create_pending(new_export())
    assert ledger.mark_renaming(stalled.id, at=NOW)
    # A second claim (a stalled run waking up after a reconciler fenced it off) is refused.
    assert not ledger.mark_renaming(stalled.id, at=NOW + timedelta(seconds=1))
    row = ledger.get(stalled.id)
    assert row is not None and row.rename_started_at is not None
    assert row.rename_started_at.replace(tzinfo=UTC) == NOW

    failed = ledger.create_pending(new_export(attempt=1, ref=DraftRef("acme", "D-2")))
    assert ledger.mark_failed(
        failed.id, expected=ExportStatus.PENDING, code="INTERRUPTED", message="x", at=NOW
    )
    assert not ledger.mark_renaming(failed.id, at=NOW)
    after = ledger.get(failed.id)
    assert after is not None and after.rename_started_at is None


def test_latest_failed_lists_only_failures_still_latest_per_draft(engine: Engine) -> None:
    ledger = SqlExportLedger(engine)

    def failed(ref: DraftRef, attempt: int, code: str, at: datetime) -> str:
        record = ledger.create_pending(new_export(attempt, ref, created_at=at))
        assert ledger.mark_failed(
            record.id, expected=ExportStatus.PENDING, code=code, message=code, at=at
        )
        return record.id

    retried = failed(REF, 1, "ACK_TIMEOUT", NOW)  # a later attempt took over: not listed
    ledger.create_pending(new_export(2, REF, created_at=NOW + timedelta(minutes=1)))
    rejected = failed(DraftRef("acme", "D-2"), 1, "ERP_REJECTED", NOW + timedelta(minutes=3))
    timed_out = failed(DraftRef("acme", "D-3"), 1, "ACK_TIMEOUT", NOW + timedelta(minutes=2))
    failed(DraftRef("acme", "D-4"), 1, "CONNECTION", NOW)  # not one of the codes asked for
    other_org = failed(DraftRef("globex", "G-1"), 1, "ACK_TIMEOUT", NOW + timedelta(minutes=4))

    codes = ("ACK_TIMEOUT", "ERP_REJECTED")
    listed = [r.id for r in ledger.latest_failed(codes)]
    assert listed == [timed_out, rejected, other_org]  # oldest change first
    assert retried not in listed
    assert [r.id for r in ledger.latest_failed(codes, org_id="globex")] == [other_org]
    assert [r.id for r in ledger.latest_failed(codes, limit=1)] == [timed_out]


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
