"""The export use case (``ExportService``) on the in-memory ports: failures while publishing.

The dropzone's fault hooks put the failure where it hurts: a refused login, a full disk, the
rename's reply lost, another run or the ERP acting while this run is between two steps.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orderflow_exports.domain.errors import (
    ClaimLost,
    ErrorCode,
    ExportError,
    NotAttempted,
    RenameOutcomeUnknown,
)
from orderflow_exports.domain.naming import DraftRef, temp_filename
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.export_ports import (
    LOCAL,
    OUTBOX,
    REF,
    START,
    ExportPorts,
    rows_of,
    sftp_config,
)


@pytest.fixture
def ports(tmp_path: Path) -> ExportPorts:
    made = ExportPorts(spool=tmp_path / "spool")
    made.add(LOCAL, REF)
    return made


# --- failures while publishing ------------------------------------------------------------------


def test_a_permanent_failure_is_recorded_and_not_repeated_in_the_same_run(
    ports: ExportPorts,
) -> None:
    full = ExportError(ErrorCode.DISK_FULL, "no space left on the dropzone", transient=False)
    ports.zone.fail("write_temp", full)
    service = ports.run()
    with pytest.raises(ExportError) as first:
        service.export(REF, run_id="run-1")
    assert first.value is full
    (failed,) = rows_of(ports)
    assert failed.status is ExportStatus.FAILED and failed.error_code == ErrorCode.DISK_FULL
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


def test_a_permanent_failure_does_not_stop_a_forced_resend_in_the_same_run(
    ports: ExportPorts,
) -> None:
    ports.zone.fail("write_temp", ExportError(ErrorCode.PERMISSION, "denied", transient=False))
    service = ports.run()
    with pytest.raises(ExportError):
        service.export(REF, run_id="run-1")
    assert service.export(REF, run_id="run-1", force=True).record.attempt == 2


def test_a_transient_publish_failure_fails_the_attempt_and_the_next_try_makes_another(
    ports: ExportPorts,
) -> None:
    ports.zone.fail("write_temp", ExportError(ErrorCode.IO, "i/o error", transient=True))
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


def test_an_unexpected_error_while_publishing_is_a_transient_io_failure(ports: ExportPorts) -> None:
    ports.zone.fail("write_temp", RuntimeError("boom"))
    with pytest.raises(ExportError, match="RuntimeError: boom") as raised:
        ports.run().export(REF, run_id="run-1")
    assert raised.value.code == ErrorCode.IO and raised.value.transient
    assert rows_of(ports)[0].status is ExportStatus.FAILED


def test_a_refused_connection_costs_no_row_and_stops_that_login_for_the_run(
    ports: ExportPorts,
) -> None:
    acme, globex = sftp_config("acme"), sftp_config("globex")
    second = DraftRef("acme", "D-2")
    ports.add(acme, second)
    ports.add(globex, DraftRef("globex", "G-1"))
    refused = ExportError(ErrorCode.CONNECTION, "connection refused", transient=True)
    ports.zone.fail("connect", refused)

    service = ports.run()
    with pytest.raises(ExportError) as first:
        service.export(REF, run_id="run-1")
    assert first.value is refused
    assert ports.ledger.rows() == [] and ports.zone.discarded == [acme.endpoint]
    # The login failed once in this run: its other drafts are not attempted at all.
    with pytest.raises(NotAttempted, match="not attempted") as skipped:
        service.export(second, run_id="run-1")
    assert skipped.value.code == ErrorCode.CONNECTION and skipped.value.transient
    assert ports.ledger.rows() == [] and ports.zone.connects == []
    # Another login on the same server is tried on its own.
    assert service.export(DraftRef("globex", "G-1"), run_id="run-1").action == "sent"
    # The next run connects again.
    assert ports.run().export(REF, run_id="run-2").action == "sent"


def test_a_permanent_login_failure_gets_its_failed_row_and_hides_its_detail_from_other_orgs(
    ports: ExportPorts,
) -> None:
    shared_key = "file:/secrets/shared/id_ed25519"
    acme, globex = sftp_config("acme", shared_key), sftp_config("globex", shared_key)
    ports.add(acme)
    ports.add(globex, DraftRef("globex", "G-1"))
    auth = ExportError(ErrorCode.AUTH, "key /secrets/shared/id_ed25519 refused", transient=False)
    ports.zone.fail("connect", auth, times=None)

    service = ports.run()
    with pytest.raises(ExportError, match="refused"):
        service.export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.FAILED and row.error_code == ErrorCode.AUTH
    with pytest.raises(NotAttempted) as skipped:
        service.export(DraftRef("globex", "G-1"), run_id="run-1")
    assert skipped.value.code == ErrorCode.AUTH and not skipped.value.transient
    assert "id_ed25519" not in str(skipped.value)  # acme's detail stays acme's
    assert rows_of(ports, DraftRef("globex", "G-1")) == []


def test_a_connection_lost_while_publishing_discards_the_session(ports: ExportPorts) -> None:
    acme = sftp_config("acme")
    ports.add(acme)
    ports.zone.fail("write_temp", ExportError(ErrorCode.CONNECTION, "reset", transient=True))
    service = ports.run()
    with pytest.raises(ExportError, match="reset"):
        service.export(REF, run_id="run-1")
    assert ports.zone.discarded == [acme.endpoint]
    assert rows_of(ports)[0].status is ExportStatus.FAILED
    with pytest.raises(NotAttempted):
        service.export(REF, run_id="run-1")


def test_a_spool_folder_that_cannot_be_written_costs_no_row(
    ports: ExportPorts, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    ports.spool = blocker
    with pytest.raises(ExportError, match="spool folder") as raised:
        ports.run().export(REF, run_id="run-1")
    assert raised.value.code == ErrorCode.IO and raised.value.transient
    assert ports.ledger.rows() == [] and ports.zone.names(OUTBOX) == []


# --- the rename's reply lost --------------------------------------------------------------------


def lost_reply() -> RenameOutcomeUnknown:
    return RenameOutcomeUnknown("connection dropped after the rename was sent")


def test_a_lost_rename_reply_with_the_file_there_is_sent(ports: ExportPorts) -> None:
    ports.zone.fail("rename", lost_reply(), after=True)
    outcome = ports.run().export(REF, run_id="run-1")
    assert outcome.action == "sent" and outcome.record.status is ExportStatus.SENT
    assert ports.final_files() == [outcome.record.filename]
    assert any("the file is in the dropzone" in w for w in ports.log.warnings)


def test_a_lost_rename_reply_with_the_file_already_taken_is_sent_unconfirmed(
    ports: ExportPorts,
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
    ports: ExportPorts,
) -> None:
    ports.zone.fail("rename", lost_reply())  # the rename never reached the server
    service = ports.run()
    with pytest.raises(RenameOutcomeUnknown):
        service.export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.FAILED and row.error_code == ErrorCode.CONNECTION
    assert ports.zone.names(OUTBOX) == []  # temp file removed: it can never be renamed now
    assert service.export(REF, run_id="run-1").record.attempt == 2


def test_a_lost_rename_reply_that_cannot_be_checked_leaves_the_row_pending(
    ports: ExportPorts,
) -> None:
    ports.zone.fail("rename", lost_reply(), after=True)
    ports.zone.fail("exists", ExportError(ErrorCode.TIMEOUT, "no answer", transient=True))
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


def test_a_run_whose_rename_right_was_taken_renames_nothing(ports: ExportPorts) -> None:
    def reconciler_fences_it_off(_: str) -> None:
        (row,) = rows_of(ports)
        assert ports.ledger.mark_renaming(row.id, at=START)

    ports.zone.on("write_temp", reconciler_fences_it_off, after=True)
    service = ports.run()
    with pytest.raises(ClaimLost, match="lost its claim") as lost:
        service.export(REF, run_id="run-1")
    assert lost.value.code == ErrorCode.INTERRUPTED and not lost.value.transient
    (row,) = rows_of(ports)
    assert row.status is ExportStatus.PENDING  # left to whoever holds the right
    assert ports.zone.names(OUTBOX) == []  # temp file removed, nothing renamed
    assert not service.spool_path(REF, row.id).exists()


def test_a_run_whose_row_was_failed_meanwhile_reports_its_lost_claim(ports: ExportPorts) -> None:
    def reconciler_fails_it(_: str) -> None:
        (row,) = rows_of(ports)
        ports.ledger.mark_renaming(row.id, at=START)
        ports.ledger.mark_failed(
            row.id, expected=ExportStatus.PENDING, code="INTERRUPTED", message="x", at=START
        )
        raise ExportError(ErrorCode.IO, "write failed", transient=True)

    ports.zone.on("write_temp", reconciler_fails_it, after=True)
    with pytest.raises(ClaimLost, match="now FAILED"):
        ports.run().export(REF, run_id="run-1")
    (row,) = rows_of(ports)
    assert row.error_code == "INTERRUPTED"  # the reconciler's verdict stands


def test_an_ack_that_overtakes_the_sent_update_is_kept(ports: ExportPorts) -> None:
    def erp_acks_at_once(_: str) -> None:
        (row,) = rows_of(ports)
        ports.ledger.mark_acked(
            row.id, expected=ExportStatus.PENDING, erp_order_number="SO-9", at=START
        )

    ports.zone.on("rename", erp_acks_at_once, after=True)
    outcome = ports.run().export(REF, run_id="run-1")
    assert outcome.action == "sent" and outcome.record.status is ExportStatus.ACKED
    assert outcome.record.erp_order_number == "SO-9"


def test_a_lost_rename_reply_after_an_ack_keeps_the_ack(ports: ExportPorts) -> None:
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
    ports: ExportPorts,
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
    ports: ExportPorts,
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
