"""The export use case (``ExportService``) on the in-memory ports: every branch, in milliseconds.

Each test is one run (one service) or several runs (several services over the same ports), as
the ``export_json`` asset builds them; the dropzone's fault hooks put the failure where it hurts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orderflow_exports.application.export_service import (
    ExportOutcome,
    ExportService,
    ExportSettings,
)
from orderflow_exports.domain.errors import (
    AlreadyInFlight,
    ClaimLost,
    ConnectorNotConfigured,
    DraftRefused,
    ExportError,
    NotAttempted,
    RenameOutcomeUnknown,
)
from orderflow_exports.domain.naming import DraftRef, export_filename, temp_filename
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

    def info(self, msg: str, *args: object) -> None:
        self.infos.append(msg % args if args else msg)

    def warning(self, msg: str, *args: object) -> None:
        self.warnings.append(msg % args if args else msg)


@dataclass
class Ports:
    """The ports a run is built on; ``run()`` builds one run's service over them."""

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


@pytest.fixture
def ports(tmp_path: Path) -> Ports:
    made = Ports(spool=tmp_path / "spool")
    made.add(LOCAL, REF)
    return made


def status_of(ports: Ports, export_id: str) -> ExportStatus:
    row = ports.ledger.get(export_id)
    assert row is not None
    return row.status


def rows_of(ports: Ports, ref: DraftRef = REF) -> list[ExportRecord]:
    return sorted((r for r in ports.ledger.rows() if r.ref == ref), key=lambda r: r.attempt)


# --- sent, already sent -------------------------------------------------------------------------


def test_a_new_draft_is_published_recorded_and_left_to_archive(ports: Ports) -> None:
    outcome = ports.run().export(REF, run_id="run-1")

    assert outcome.action == "sent"
    row = ports.ledger.get(outcome.export_id)
    assert row == outcome.record
    assert row is not None and row.status is ExportStatus.SENT and row.attempt == 1
    assert row.rename_started_at is not None and row.sent_at is not None
    assert row.dagster_run_id == "run-1" and not row.forced
    assert ports.final_files() == [row.filename]
    assert ports.zone.names(OUTBOX) == [row.filename]  # no temp file left
    published = ports.zone.data(OUTBOX, row.filename)
    assert hashlib.sha256(published).hexdigest() == row.content_sha256
    assert len(published) == row.byte_size and row.line_count == 3
    document = json.loads(published)
    assert document["export"]["export_id"] == row.id and document["org_id"] == "acme"
    # The spool file is what the IO manager archives; the row already names its location.
    assert outcome.spool_file is not None and outcome.spool_file.read_bytes() == published
    assert row.storage_key == f"memory://exports/acme/D-1/{row.id}.json"
    assert row.dropzone_path == f"{OUTBOX}/{row.filename}"


def test_a_sent_or_acked_draft_is_not_sent_again(ports: Ports) -> None:
    first = ports.run().export(REF, run_id="run-1")
    again = ports.run().export(REF, run_id="run-2")
    assert again.action == "already_sent" and again.export_id == first.export_id
    assert again.spool_file == first.spool_file  # still there: the archive may retry it

    assert ports.ledger.mark_acked(
        first.export_id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=START
    )
    acked = ports.run().export(REF, run_id="run-3")
    assert acked.action == "already_sent" and acked.record.status is ExportStatus.ACKED
    assert len(rows_of(ports)) == 1 and len(ports.final_files()) == 1


def test_one_config_read_per_org_and_run(ports: Ports) -> None:
    refs = [DraftRef("acme", f"D-{n}") for n in range(2, 6)]
    for ref in refs:
        ports.drafts.add(ref)
    service = ports.run()
    for ref in [REF, *refs]:
        assert service.export(ref, run_id="run-1").action == "sent"
    assert ports.configs.reads == {"acme": 1}
    assert len(ports.final_files()) == 5


# --- refusals before anything is built ----------------------------------------------------------


def test_an_org_without_an_enabled_connector_is_refused(ports: Ports) -> None:
    other = DraftRef("globex", "G-1")
    ports.drafts.add(other)
    with pytest.raises(ConnectorNotConfigured, match="not configured"):
        ports.run().export(other)
    ports.configs.upsert(
        ConnectorConfig(
            org_id="globex",
            transport="local",
            export_path="/dz/globex/outbox",
            ack_path="/dz/globex/acks",
            enabled=False,
        )
    )
    with pytest.raises(ConnectorNotConfigured, match="disabled"):
        ports.run().export(other)
    assert ports.ledger.rows() == [] and ports.zone.connects == []


def test_a_connector_breaking_the_rules_fails_its_own_org_only(ports: Ports) -> None:
    ports.add(
        ConnectorConfig(
            org_id="globex", transport="local", export_path="relative/out", ack_path="/g/acks"
        ),
        DraftRef("globex", "G-1"),
    )
    service = ports.run()
    with pytest.raises(ExportError, match="is refused") as refused:
        service.export(DraftRef("globex", "G-1"))
    assert refused.value.code == ExportError.CONFIG and not refused.value.transient
    assert service.export(REF).action == "sent"


@pytest.mark.parametrize("status", ["DRAFT", "CANCELLED"])
def test_a_draft_that_is_not_approved_is_refused_without_a_row(ports: Ports, status: str) -> None:
    ports.drafts.set_status(REF, status)
    with pytest.raises(DraftRefused, match="only APPROVED"):
        ports.run().export(REF)
    with pytest.raises(DraftRefused, match="does not exist"):
        ports.run().export(DraftRef("acme", "missing"))
    assert ports.ledger.rows() == [] and ports.final_files() == []


# --- forced resend ------------------------------------------------------------------------------


def test_a_forced_resend_supersedes_the_sent_export(ports: Ports) -> None:
    first = ports.run().export(REF, run_id="run-1")
    forced = ports.run().export(REF, force=True, run_id="run-2")

    assert forced.action == "sent" and forced.record.attempt == 2 and forced.record.forced
    old = ports.ledger.get(first.export_id)
    assert old is not None and old.status is ExportStatus.FAILED
    assert old.error_code == "SUPERSEDED" and forced.export_id in (old.error_message or "")
    assert len(ports.final_files()) == 2  # a new file name: never replaces the old one


def test_a_forced_resend_of_an_acked_export_leaves_it_acked(ports: Ports) -> None:
    first = ports.run().export(REF, run_id="run-1")
    ports.ledger.mark_acked(
        first.export_id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=START
    )
    forced = ports.run().export(REF, force=True, run_id="run-2")
    assert forced.action == "sent" and forced.record.attempt == 2
    assert status_of(ports, first.export_id) is ExportStatus.ACKED


# --- an earlier attempt left PENDING ------------------------------------------------------------


def test_a_pending_export_whose_file_landed_is_recovered_as_sent(ports: Ports) -> None:
    stalled = ports.pending()
    ports.zone.put(OUTBOX, stalled.filename, b"{}\n")

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "recovered" and outcome.export_id == stalled.id
    assert outcome.record.status is ExportStatus.SENT
    assert outcome.spool_file is None  # that run's spool file is not on this machine
    assert len(rows_of(ports)) == 1
    assert any("its file is in the dropzone" in w for w in ports.log.warnings)


def test_a_pending_export_interrupted_before_its_rename_is_failed_and_retried(
    ports: Ports,
) -> None:
    stalled = ports.pending()
    ports.zone.put(OUTBOX, temp_filename(stalled.filename), b"{}")  # its upload, half done

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "sent" and outcome.record.attempt == 2
    old = ports.ledger.get(stalled.id)
    assert old is not None and old.status is ExportStatus.FAILED
    assert old.error_code == ExportError.INTERRUPTED and "dead-run" in (old.error_message or "")
    # The rename right was taken from the stalled run: it can never rename any more.
    assert old.rename_started_at is not None
    assert ports.zone.names(OUTBOX) == [outcome.record.filename]


def test_a_pending_export_whose_rename_was_issued_and_file_taken_is_sent_unconfirmed(
    ports: Ports,
) -> None:
    stalled = ports.pending()
    assert ports.ledger.mark_renaming(stalled.id, at=START)

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "recovered" and outcome.record.status is ExportStatus.SENT
    assert len(rows_of(ports)) == 1 and ports.final_files() == []
    assert any("unconfirmed" in w for w in ports.log.warnings)


def test_a_pending_export_whose_rename_was_issued_but_not_done_is_failed_and_retried(
    ports: Ports,
) -> None:
    stalled = ports.pending()
    assert ports.ledger.mark_renaming(stalled.id, at=START)
    ports.zone.put(OUTBOX, temp_filename(stalled.filename), b"{}")

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "sent" and outcome.record.attempt == 2
    assert status_of(ports, stalled.id) is ExportStatus.FAILED
    assert ports.zone.names(OUTBOX) == [outcome.record.filename]  # its temp file removed


def test_a_pending_export_of_a_run_still_running_is_left_alone(ports: Ports) -> None:
    stalled = ports.pending(run_id="busy-run")
    ports.liveness.active.add("busy-run")
    with pytest.raises(AlreadyInFlight, match="busy-run"):
        ports.run().export(REF, run_id="run-2")
    assert status_of(ports, stalled.id) is ExportStatus.PENDING
    assert ports.zone.connects == []


def test_a_forced_resend_settles_a_pending_export_first(ports: Ports) -> None:
    stalled = ports.pending()
    ports.zone.put(OUTBOX, stalled.filename, b"{}\n")
    forced = ports.run().export(REF, force=True, run_id="run-2")
    assert forced.action == "sent" and forced.record.attempt == 2
    old = ports.ledger.get(stalled.id)
    assert old is not None and old.error_code == "SUPERSEDED"


def test_a_pending_export_is_left_pending_when_the_dropzone_cannot_be_asked(
    ports: Ports,
) -> None:
    stalled = ports.pending()
    ports.zone.fail("exists", ExportError(ExportError.TIMEOUT, "no answer", transient=True))
    with pytest.raises(ExportError, match="no answer"):
        ports.run().export(REF, run_id="run-2")
    assert status_of(ports, stalled.id) is ExportStatus.PENDING
    assert len(rows_of(ports)) == 1


class OwnerWakesUpLedger(FakeLedger):
    """The stalled owner takes its rename right just before the reconciler tries to."""

    def __init__(self) -> None:
        super().__init__()
        self.owner_of: str | None = None  # the export whose owner wakes up

    def mark_renaming(self, export_id: str, *, at: datetime) -> bool:
        if export_id == self.owner_of:
            self.owner_of = None
            assert super().mark_renaming(export_id, at=at)
        return super().mark_renaming(export_id, at=at)


def test_a_reconciler_that_loses_the_rename_right_decides_again(tmp_path: Path) -> None:
    ledger = OwnerWakesUpLedger()
    ports = Ports(spool=tmp_path / "spool", ledger=ledger)
    ports.add(LOCAL, REF)
    stalled = ports.pending()
    ledger.owner_of = stalled.id
    ports.zone.put(OUTBOX, temp_filename(stalled.filename), b"{}")  # the owner never renamed

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "sent" and outcome.record.attempt == 2
    assert status_of(ports, stalled.id) is ExportStatus.FAILED
    assert ports.zone.names(OUTBOX) == [outcome.record.filename]


# --- failures while publishing ------------------------------------------------------------------


def test_a_permanent_failure_is_recorded_and_not_repeated_in_the_same_run(ports: Ports) -> None:
    full = ExportError(ExportError.DISK_FULL, "no space left on the dropzone", transient=False)
    ports.zone.fail("write_temp", full)
    service = ports.run()
    with pytest.raises(ExportError) as first:
        service.export(REF, run_id="run-1")
    assert first.value is full
    (failed,) = rows_of(ports)
    assert failed.status is ExportStatus.FAILED and failed.error_code == ExportError.DISK_FULL
    assert (failed.error_message or "").endswith("(permanent)")
    assert not service.spool_path(REF, failed.id).exists()  # a FAILED attempt is never archived
    assert ports.zone.names(OUTBOX) == []

    # A step retry of the same run, and a run retry naming it, fail again at once.
    for retry, related in ((ports.run(), ()), (ports.run(), ("run-1",))):
        run_id = "run-1" if not related else "run-1-retry"
        with pytest.raises(ExportError, match="already failed permanently in this run"):
            retry.export(REF, run_id=run_id, related_run_ids=related)
    assert len(rows_of(ports)) == 1

    # Another run (an operator after a fix) makes a new attempt.
    assert ports.run().export(REF, run_id="run-2").record.attempt == 2


def test_a_permanent_failure_does_not_stop_a_forced_resend_in_the_same_run(ports: Ports) -> None:
    ports.zone.fail("write_temp", ExportError(ExportError.PERMISSION, "denied", transient=False))
    service = ports.run()
    with pytest.raises(ExportError):
        service.export(REF, run_id="run-1")
    assert service.export(REF, run_id="run-1", force=True).record.attempt == 2


def test_a_transient_publish_failure_fails_the_attempt_and_the_next_try_makes_another(
    ports: Ports,
) -> None:
    ports.zone.fail("write_temp", ExportError(ExportError.IO, "i/o error", transient=True))
    service = ports.run()
    with pytest.raises(ExportError, match="i/o error") as raised:
        service.export(REF, run_id="run-1")
    assert raised.value.transient
    (failed,) = rows_of(ports)
    assert failed.status is ExportStatus.FAILED and (failed.error_message or "").endswith(
        "(transient)"
    )
    # Not a permanent failure: the same run's retry tries again, as a new attempt.
    retried = service.export(REF, run_id="run-1")
    assert retried.action == "sent" and retried.record.attempt == 2
    assert ports.final_files() == [retried.record.filename]


def test_an_unexpected_error_while_publishing_is_a_transient_io_failure(ports: Ports) -> None:
    ports.zone.fail("write_temp", RuntimeError("boom"))
    with pytest.raises(ExportError, match="RuntimeError: boom") as raised:
        ports.run().export(REF, run_id="run-1")
    assert raised.value.code == ExportError.IO and raised.value.transient
    assert rows_of(ports)[0].status is ExportStatus.FAILED


def test_a_refused_connection_costs_no_row_and_stops_that_login_for_the_run(
    ports: Ports,
) -> None:
    acme, globex = sftp_config("acme"), sftp_config("globex")
    second = DraftRef("acme", "D-2")
    ports.add(acme, second)
    ports.add(globex, DraftRef("globex", "G-1"))
    refused = ExportError(ExportError.CONNECTION, "connection refused", transient=True)
    ports.zone.fail("connect", refused)

    service = ports.run()
    with pytest.raises(ExportError) as first:
        service.export(REF, run_id="run-1")
    assert first.value is refused
    assert ports.ledger.rows() == [] and ports.zone.discarded == [acme.endpoint]
    # The login failed once in this run: its other drafts are not attempted at all.
    with pytest.raises(NotAttempted, match="not attempted") as skipped:
        service.export(second, run_id="run-1")
    assert skipped.value.code == ExportError.CONNECTION and skipped.value.transient
    assert ports.ledger.rows() == [] and ports.zone.connects == []
    # Another login on the same server is tried on its own.
    assert service.export(DraftRef("globex", "G-1"), run_id="run-1").action == "sent"
    # The next run connects again.
    assert ports.run().export(REF, run_id="run-2").action == "sent"


def test_a_permanent_login_failure_gets_its_failed_row_and_hides_its_detail_from_other_orgs(
    ports: Ports,
) -> None:
    shared_key = "file:/secrets/shared/id_ed25519"
    acme, globex = sftp_config("acme", shared_key), sftp_config("globex", shared_key)
    ports.add(acme)
    ports.add(globex, DraftRef("globex", "G-1"))
    auth = ExportError(ExportError.AUTH, "key /secrets/shared/id_ed25519 refused", transient=False)
    ports.zone.fail("connect", auth, times=None)

    service = ports.run()
    with pytest.raises(ExportError, match="refused"):
        service.export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.FAILED and row.error_code == ExportError.AUTH
    with pytest.raises(NotAttempted) as skipped:
        service.export(DraftRef("globex", "G-1"), run_id="run-1")
    assert skipped.value.code == ExportError.AUTH and not skipped.value.transient
    assert "id_ed25519" not in str(skipped.value)  # acme's detail stays acme's
    assert rows_of(ports, DraftRef("globex", "G-1")) == []


def test_a_connection_lost_while_publishing_discards_the_session(ports: Ports) -> None:
    acme = sftp_config("acme")
    ports.add(acme)
    ports.zone.fail("write_temp", ExportError(ExportError.CONNECTION, "reset", transient=True))
    service = ports.run()
    with pytest.raises(ExportError, match="reset"):
        service.export(REF, run_id="run-1")
    assert ports.zone.discarded == [acme.endpoint]
    assert rows_of(ports)[0].status is ExportStatus.FAILED
    with pytest.raises(NotAttempted):
        service.export(REF, run_id="run-1")


def test_a_spool_folder_that_cannot_be_written_costs_no_row(ports: Ports, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    ports.spool = blocker
    with pytest.raises(ExportError, match="spool folder") as raised:
        ports.run().export(REF, run_id="run-1")
    assert raised.value.code == ExportError.IO and raised.value.transient
    assert ports.ledger.rows() == [] and ports.zone.names(OUTBOX) == []


# --- the rename's reply lost --------------------------------------------------------------------


def lost_reply() -> RenameOutcomeUnknown:
    return RenameOutcomeUnknown("connection dropped after the rename was sent")


def test_a_lost_rename_reply_with_the_file_there_is_sent(ports: Ports) -> None:
    ports.zone.fail("rename", lost_reply(), after=True)
    outcome = ports.run().export(REF, run_id="run-1")
    assert outcome.action == "sent" and outcome.record.status is ExportStatus.SENT
    assert ports.final_files() == [outcome.record.filename]
    assert any("the file is in the dropzone" in w for w in ports.log.warnings)


def test_a_lost_rename_reply_with_the_file_already_taken_is_sent_unconfirmed(
    ports: Ports,
) -> None:
    def erp_takes_it_then_the_reply_is_lost(path: str) -> None:
        ports.zone.take(OUTBOX, path.rsplit("/", 1)[1])
        raise lost_reply()

    ports.zone.on("rename", erp_takes_it_then_the_reply_is_lost, after=True)
    outcome = ports.run().export(REF, run_id="run-1")
    assert outcome.action == "sent" and outcome.record.status is ExportStatus.SENT
    assert ports.zone.names(OUTBOX) == []
    assert any("unconfirmed" in w for w in ports.log.warnings)


def test_a_lost_rename_reply_with_the_temp_file_still_there_fails_the_attempt(
    ports: Ports,
) -> None:
    ports.zone.fail("rename", lost_reply())  # the rename never reached the server
    service = ports.run()
    with pytest.raises(RenameOutcomeUnknown):
        service.export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.FAILED and row.error_code == ExportError.CONNECTION
    assert ports.zone.names(OUTBOX) == []  # temp file removed: it can never be renamed now
    assert service.export(REF, run_id="run-1").record.attempt == 2


def test_a_lost_rename_reply_that_cannot_be_checked_leaves_the_row_pending(
    ports: Ports,
) -> None:
    ports.zone.fail("rename", lost_reply(), after=True)
    ports.zone.fail("exists", ExportError(ExportError.TIMEOUT, "no answer", transient=True))
    service = ports.run()
    with pytest.raises(RenameOutcomeUnknown):
        service.export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.PENDING and row.rename_started_at is not None
    assert service.spool_path(REF, row.id).exists()  # kept for the archive once it is settled
    assert any("cannot be checked" in w for w in ports.log.warnings)

    # The next try checks the dropzone first and finds the file: recovered, not sent twice.
    again = service.export(REF, run_id="run-1")
    assert again.action == "recovered" and again.export_id == row.id
    assert again.spool_file == service.spool_path(REF, row.id)
    assert len(ports.final_files()) == 1


# --- the claim lost to another run --------------------------------------------------------------


def test_a_run_whose_rename_right_was_taken_renames_nothing(ports: Ports) -> None:
    def reconciler_fences_it_off(_: str) -> None:
        (row,) = rows_of(ports)
        assert ports.ledger.mark_renaming(row.id, at=START)

    ports.zone.on("write_temp", reconciler_fences_it_off, after=True)
    service = ports.run()
    with pytest.raises(ClaimLost, match="lost its claim") as lost:
        service.export(REF, run_id="run-1")
    assert lost.value.code == ExportError.INTERRUPTED and not lost.value.transient
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.PENDING  # left to whoever holds the right
    assert ports.zone.names(OUTBOX) == []  # temp file removed, nothing renamed
    assert not service.spool_path(REF, row.id).exists()


def test_a_run_whose_row_was_failed_meanwhile_reports_its_lost_claim(ports: Ports) -> None:
    def reconciler_fails_it(_: str) -> None:
        (row,) = rows_of(ports)
        ports.ledger.mark_renaming(row.id, at=START)
        ports.ledger.mark_failed(
            row.id, expected=ExportStatus.PENDING, code="INTERRUPTED", message="x", at=START
        )
        raise ExportError(ExportError.IO, "write failed", transient=True)

    ports.zone.on("write_temp", reconciler_fails_it, after=True)
    with pytest.raises(ClaimLost, match="now FAILED"):
        ports.run().export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.error_code == "INTERRUPTED"  # the reconciler's verdict stands


def test_an_ack_that_overtakes_the_sent_update_is_kept(ports: Ports) -> None:
    def erp_acks_at_once(_: str) -> None:
        (row,) = rows_of(ports)
        ports.ledger.mark_acked(
            row.id, expected=ExportStatus.PENDING, erp_order_number="SO-9", at=START
        )

    ports.zone.on("rename", erp_acks_at_once, after=True)
    outcome = ports.run().export(REF, run_id="run-1")
    assert outcome.action == "sent" and outcome.record.status is ExportStatus.ACKED
    assert outcome.record.erp_order_number == "SO-9"


def test_a_lost_rename_reply_after_an_ack_keeps_the_ack(ports: Ports) -> None:
    def erp_acks_then_the_reply_is_lost(_: str) -> None:
        (row,) = rows_of(ports)
        ports.ledger.mark_acked(
            row.id, expected=ExportStatus.PENDING, erp_order_number="SO-9", at=START
        )
        raise lost_reply()

    ports.zone.on("rename", erp_acks_then_the_reply_is_lost, after=True)
    outcome = ports.run().export(REF, run_id="run-1")
    assert outcome.action == "sent" and outcome.record.status is ExportStatus.ACKED


def test_a_lost_rename_reply_on_a_row_failed_meanwhile_reports_the_lost_claim(
    ports: Ports,
) -> None:
    def reconciler_fails_it_then_the_reply_is_lost(_: str) -> None:
        (row,) = rows_of(ports)
        ports.ledger.mark_failed(
            row.id, expected=ExportStatus.PENDING, code="INTERRUPTED", message="x", at=START
        )
        raise lost_reply()

    ports.zone.on("rename", reconciler_fails_it_then_the_reply_is_lost, after=True)
    service = ports.run()
    with pytest.raises(ClaimLost, match="its rename failed meanwhile"):
        service.export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.FAILED and row.error_code == "INTERRUPTED"
    assert not service.spool_path(REF, row.id).exists()


# --- tidiness -----------------------------------------------------------------------------------


def test_stale_temp_files_are_swept_once_per_folder_and_run_except_claimed_ones(
    ports: Ports,
) -> None:
    claimed = ports.pending()
    assert ports.ledger.mark_renaming(claimed.id, at=START)
    old = time.time() - 2 * 3600
    ports.zone.put(OUTBOX, temp_filename(claimed.filename), b"{}", mtime=old)
    ports.zone.put(OUTBOX, ".acme_D-9_x_dead.json.tmp", b"{}", mtime=old)
    ports.zone.put(OUTBOX, ".acme_D-8_x_fresh.json.tmp", b"{}")
    other = DraftRef("acme", "D-2")
    ports.drafts.add(other)

    service = ports.run()
    outcome = service.export(other, run_id="run-1")
    assert outcome.action == "sent"
    names = ports.zone.names(OUTBOX)
    assert ".acme_D-9_x_dead.json.tmp" not in names
    assert ".acme_D-8_x_fresh.json.tmp" in names
    assert temp_filename(claimed.filename) in names  # the evidence its settling needs
    assert any("removed stale temp file" in w for w in ports.log.warnings)

    ports.zone.put(OUTBOX, ".acme_D-7_x_dead.json.tmp", b"{}", mtime=old)
    ports.drafts.add(DraftRef("acme", "D-3"))
    service.export(DraftRef("acme", "D-3"), run_id="run-1")
    assert ".acme_D-7_x_dead.json.tmp" in ports.zone.names(OUTBOX)  # swept once per run


def test_outcome_names_its_export(ports: Ports) -> None:
    outcome: ExportOutcome = ports.run().export(REF)
    assert outcome.export_id == outcome.record.id and outcome.ref == REF
