"""The export use case (``ExportService``) on the in-memory ports: what a run does with a draft.

Sent, already sent, refused before anything is built, forced, and an earlier attempt left
PENDING by a run that stopped; each test is one run or several runs over the same ports.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from orderflow_exports.application.export_service import ExportOutcome
from orderflow_exports.domain.errors import (
    AlreadyInFlight,
    ConnectorNotConfigured,
    DraftRefused,
    ErrorCode,
    ExportError,
)
from orderflow_exports.domain.naming import DraftRef, temp_filename
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.fakes.export_ports import (
    LOCAL,
    OUTBOX,
    REF,
    START,
    ExportPorts,
    rows_of,
    status_of,
)
from orderflow_exports_tests.fakes.ledger import FakeLedger


@pytest.fixture
def ports(tmp_path: Path) -> ExportPorts:
    made = ExportPorts(spool=tmp_path / "spool")
    made.add(LOCAL, REF)
    return made


# --- sent, already sent -------------------------------------------------------------------------


def test_a_new_draft_is_published_recorded_and_left_to_archive(ports: ExportPorts) -> None:
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


def test_a_sent_or_acked_draft_is_not_sent_again(ports: ExportPorts) -> None:
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


def test_one_config_read_per_org_and_run(ports: ExportPorts) -> None:
    refs = [DraftRef("acme", f"D-{n}") for n in range(2, 6)]
    for ref in refs:
        ports.drafts.add(ref)
    service = ports.run()
    for ref in [REF, *refs]:
        assert service.export(ref, run_id="run-1").action == "sent"
    assert ports.configs.reads == {"acme": 1}
    assert len(ports.final_files()) == 5


# --- refusals before anything is built ----------------------------------------------------------


def test_an_org_without_an_enabled_connector_is_refused(ports: ExportPorts) -> None:
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


def test_a_connector_breaking_the_rules_fails_its_own_org_only(ports: ExportPorts) -> None:
    ports.add(
        ConnectorConfig(
            org_id="globex", transport="local", export_path="relative/out", ack_path="/g/acks"
        ),
        DraftRef("globex", "G-1"),
    )
    service = ports.run()
    with pytest.raises(ExportError, match="is refused") as refused:
        service.export(DraftRef("globex", "G-1"))
    assert refused.value.code == ErrorCode.CONFIG and not refused.value.transient
    assert service.export(REF).action == "sent"


@pytest.mark.parametrize("status", ["DRAFT", "CANCELLED"])
def test_a_draft_that_is_not_approved_is_refused_without_a_row(
    ports: ExportPorts, status: str
) -> None:
    ports.drafts.set_status(REF, status)
    with pytest.raises(DraftRefused, match="only APPROVED"):
        ports.run().export(REF)
    with pytest.raises(DraftRefused, match="does not exist"):
        ports.run().export(DraftRef("acme", "missing"))
    assert ports.ledger.rows() == [] and ports.final_files() == []


# --- forced resend ------------------------------------------------------------------------------


def test_a_forced_resend_supersedes_the_sent_export(ports: ExportPorts) -> None:
    first = ports.run().export(REF, run_id="run-1")
    forced = ports.run().export(REF, force=True, run_id="run-2")

    assert forced.action == "sent" and forced.record.attempt == 2 and forced.record.forced
    old = ports.ledger.get(first.export_id)
    assert old is not None and old.status is ExportStatus.FAILED
    assert old.error_code == "SUPERSEDED" and forced.export_id in (old.error_message or "")
    assert len(ports.final_files()) == 2  # a new file name: never replaces the old one


def test_a_forced_resend_of_an_acked_export_leaves_it_acked(ports: ExportPorts) -> None:
    first = ports.run().export(REF, run_id="run-1")
    ports.ledger.mark_acked(
        first.export_id, expected=ExportStatus.SENT, erp_order_number="SO-1", at=START
    )
    forced = ports.run().export(REF, force=True, run_id="run-2")
    assert forced.action == "sent" and forced.record.attempt == 2
    assert status_of(ports, first.export_id) is ExportStatus.ACKED


# --- an earlier attempt left PENDING ------------------------------------------------------------


def test_a_pending_export_whose_file_landed_is_recovered_as_sent(ports: ExportPorts) -> None:
    stalled = ports.pending()
    ports.zone.put(OUTBOX, stalled.filename, b"{}\n")

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "recovered" and outcome.export_id == stalled.id
    assert outcome.record.status is ExportStatus.SENT
    assert outcome.spool_file is None  # that run's spool file is not on this machine
    assert len(rows_of(ports)) == 1
    assert any("its file is in the dropzone" in w for w in ports.log.warnings)


def test_a_pending_export_interrupted_before_its_rename_is_failed_and_retried(
    ports: ExportPorts,
) -> None:
    stalled = ports.pending()
    ports.zone.put(OUTBOX, temp_filename(stalled.filename), b"{}")  # its upload, half done

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "sent" and outcome.record.attempt == 2
    old = ports.ledger.get(stalled.id)
    assert old is not None and old.status is ExportStatus.FAILED
    assert old.error_code == ErrorCode.INTERRUPTED and "dead-run" in (old.error_message or "")
    # The rename right was taken from the stalled run: it can never rename any more.
    assert old.rename_started_at is not None
    assert ports.zone.names(OUTBOX) == [outcome.record.filename]


def test_a_pending_export_whose_rename_was_issued_and_file_taken_is_sent_unconfirmed(
    ports: ExportPorts,
) -> None:
    stalled = ports.pending()
    assert ports.ledger.mark_renaming(stalled.id, at=START)

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "recovered" and outcome.record.status is ExportStatus.SENT
    assert len(rows_of(ports)) == 1 and ports.final_files() == []
    assert any("unconfirmed" in w for w in ports.log.warnings)


def test_a_pending_export_whose_rename_was_issued_but_not_done_is_failed_and_retried(
    ports: ExportPorts,
) -> None:
    stalled = ports.pending()
    assert ports.ledger.mark_renaming(stalled.id, at=START)
    ports.zone.put(OUTBOX, temp_filename(stalled.filename), b"{}")

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "sent" and outcome.record.attempt == 2
    assert status_of(ports, stalled.id) is ExportStatus.FAILED
    assert ports.zone.names(OUTBOX) == [outcome.record.filename]  # its temp file removed


def test_a_pending_export_of_a_run_still_running_is_left_alone(ports: ExportPorts) -> None:
    stalled = ports.pending(run_id="busy-run")
    ports.liveness.active.add("busy-run")
    with pytest.raises(AlreadyInFlight, match="busy-run"):
        ports.run().export(REF, run_id="run-2")
    assert status_of(ports, stalled.id) is ExportStatus.PENDING
    assert ports.zone.connects == []


def test_a_forced_resend_settles_a_pending_export_first(ports: ExportPorts) -> None:
    stalled = ports.pending()
    ports.zone.put(OUTBOX, stalled.filename, b"{}\n")
    forced = ports.run().export(REF, force=True, run_id="run-2")
    assert forced.action == "sent" and forced.record.attempt == 2
    old = ports.ledger.get(stalled.id)
    assert old is not None and old.error_code == "SUPERSEDED"


def test_a_pending_export_is_left_pending_when_the_dropzone_cannot_be_asked(
    ports: ExportPorts,
) -> None:
    stalled = ports.pending()
    ports.zone.fail("exists", ExportError(ErrorCode.TIMEOUT, "no answer", transient=True))
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
    ports = ExportPorts(spool=tmp_path / "spool", ledger=ledger)
    ports.add(LOCAL, REF)
    stalled = ports.pending()
    ledger.owner_of = stalled.id
    ports.zone.put(OUTBOX, temp_filename(stalled.filename), b"{}")  # the owner never renamed

    outcome = ports.run().export(REF, run_id="run-2")
    assert outcome.action == "sent" and outcome.record.attempt == 2
    assert status_of(ports, stalled.id) is ExportStatus.FAILED
    assert ports.zone.names(OUTBOX) == [outcome.record.filename]


def test_outcome_names_its_export(ports: ExportPorts) -> None:
    outcome: ExportOutcome = ports.run().export(REF)
    assert outcome.export_id == outcome.record.id and outcome.ref == REF
