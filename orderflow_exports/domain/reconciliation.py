"""Reconciliation rules: what a mismatch between an org's folders and ``erp_export`` means.

Pure functions over what was listed and read; the use case (``application/reconciliation``)
does the listing, the ledger reads and any fixing. Names found in a dropzone are the ERP's (or
anyone's on its server), so every name a finding carries is escaped and bounded.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from orderflow_exports.domain.ack_files import excerpt
from orderflow_exports.domain.errors import InvalidIdentifier
from orderflow_exports.domain.naming import (
    FILE_SUFFIX,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    is_our_temp_file,
    validate_id,
)
from orderflow_exports.domain.ports import FolderEntry
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

FindingKind = Literal[
    "stale_file",  # (a) our file still in the dropzone long after it was sent
    "unknown_file",  # (b) an entry of the export folder that no row of this org names
    "temp_left",  # (c) a temp file of ours older than the stale-temp age
    "pending_orphaned",  # (d) a PENDING row whose run is no longer active
    "sent_unanswered",  # (e) SENT, file taken by the ERP, no ack yet
    "not_reconciled",  # the org (or one of its folders) could not be checked
]
FINDING_KINDS: tuple[FindingKind, ...] = (
    "stale_file",
    "unknown_file",
    "temp_left",
    "pending_orphaned",
    "sent_unanswered",
    "not_reconciled",
)
_SHOWN_NAME_CHARS = 160


@dataclass(frozen=True)
class Finding:
    """One mismatch of one org: what it is, about which draft or file, since when, what to do."""

    kind: FindingKind
    org_id: str
    subject: str  # the file name (escaped) or the export id
    next_step: str
    draft_order_id: str | None = None
    export_id: str | None = None
    age_seconds: float | None = None
    detail: str = ""
    fixed: str | None = None  # what fix mode did about it, when it did anything

    @property
    def partition_key(self) -> str | None:
        return f"{self.org_id}:{self.draft_order_id}" if self.draft_order_id else None


@dataclass(frozen=True)
class ReconcileRules:
    """Thresholds: younger than these, a state is normal traffic, not a mismatch."""

    stale_file_after: timedelta = timedelta(hours=4)
    stale_temp_age: timedelta = timedelta(hours=1)
    pending_grace: timedelta = timedelta(minutes=15)
    unanswered_after: timedelta = timedelta(hours=1)


def shown(name: str) -> str:
    """A dropzone name as findings and logs show it."""
    return excerpt(name, _SHOWN_NAME_CHARS)


def export_id_of(filename: str) -> str | None:
    """The export id a final file name of ours carries (its last ``_`` field), else None."""
    if not filename.endswith(FILE_SUFFIX):
        return None
    _, sep, export_id = filename[: -len(FILE_SUFFIX)].rpartition("_")
    if not sep:
        return None
    try:
        return validate_id(export_id, "export_id")
    except InvalidIdentifier:
        return None


def final_name_of_temp(name: str) -> str:
    return name[len(TEMP_PREFIX) : len(name) - len(TEMP_SUFFIX)]


def _age(now: datetime, then: datetime | float | None) -> float | None:
    if then is None:
        return None
    stamp = then if isinstance(then, float | int) else then.timestamp()
    return max(now.timestamp() - float(stamp), 0.0)


def own_row(record: ExportRecord | None, org_id: str, filename: str) -> ExportRecord | None:
    """The row a file name stands for, only when it is this org's and names exactly that file."""
    if record is None or record.org_id != org_id or record.filename != filename:
        return None
    return record


def classify_export_folder(
    org_id: str,
    entries: Collection[FolderEntry],
    rows: Mapping[str, ExportRecord | None],
    now: datetime,
    rules: ReconcileRules,
) -> list[Finding]:
    """Findings (a), (b) and (c) of one export folder listing.

    ``rows`` maps each export id named by an entry to its row as read (None: unknown). Folders
    are left alone (an ERP may keep its own there); every other entry that is not a file of a
    row of this org is reported, symlinks included (never followed).
    """
    findings: list[Finding] = []
    for entry in entries:
        if entry.kind == "dir":
            continue
        name = shown(entry.name)
        age = _age(now, entry.mtime)
        if entry.kind == "file" and is_our_temp_file(entry.name):
            final = final_name_of_temp(entry.name)
            export_id = export_id_of(final)
            row = own_row(rows.get(export_id) if export_id else None, org_id, final)
            if row is not None and row.status is ExportStatus.PENDING:
                continue  # the PENDING row's own evidence: judged with the row, below
            if age is not None and age > rules.stale_temp_age.total_seconds():
                findings.append(
                    Finding(
                        "temp_left",
                        org_id,
                        name,
                        "remove it (reconciliation with remove_stale_temps, or the next "
                        "export run's sweep); it was never renamed and never will be",
                        draft_order_id=row.draft_order_id if row else None,
                        export_id=row.id if row else None,
                        age_seconds=age,
                        detail=f"row {row.status}" if row else "no row of this org",
                    )
                )
            continue
        export_id = export_id_of(entry.name) if entry.kind == "file" else None
        row = own_row(rows.get(export_id) if export_id else None, org_id, entry.name)
        if row is None:
            findings.append(
                Finding(
                    "unknown_file",
                    org_id,
                    name,
                    "find out who wrote it; this connector did not (never removed by us)",
                    age_seconds=age,
                    detail=f"a {entry.kind}" + ("" if entry.kind == "file" else ", not followed"),
                )
            )
            continue
        if row.status is ExportStatus.PENDING:
            continue  # being published, or an orphan: judged with the row
        since = row.sent_at or row.updated_at
        sent_age = _age(now, since)
        if sent_age is None or sent_age <= rules.stale_file_after.total_seconds():
            continue
        if row.status is ExportStatus.SENT:
            step = "the ERP is not picking files up: check its import job and its access"
        elif row.status is ExportStatus.FAILED:
            step = (
                f"this attempt is FAILED ({row.error_code}) but its file is still offered: the "
                "ERP may still import it; remove it before any re-send"
            )
        else:
            step = "acknowledged but still in the dropzone: the ERP's cleanup is not running"
        findings.append(
            Finding(
                "stale_file",
                org_id,
                name,
                step,
                draft_order_id=row.draft_order_id,
                export_id=row.id,
                age_seconds=sent_age,
                detail=f"row {row.status} since {since.isoformat()}",
            )
        )
    return findings


def classify_pending(
    record: ExportRecord, *, run_active: bool, now: datetime, rules: ReconcileRules
) -> Finding | None:
    """Finding (d): a PENDING row past the grace whose run is not active (or unknown)."""
    age = _age(now, record.created_at) or 0.0
    if run_active or age <= rules.pending_grace.total_seconds():
        return None
    run = record.dagster_run_id or "none"
    return Finding(
        "pending_orphaned",
        record.org_id,
        record.id,
        "settle it (reconciliation with settle_orphaned_pending, or the next export of the "
        "draft): file there → SENT, else FAILED (INTERRUPTED) and a new attempt",
        draft_order_id=record.draft_order_id,
        export_id=record.id,
        age_seconds=age,
        detail=f"run {run} is not active; rename "
        + ("issued" if record.rename_started_at else "never issued"),
    )


def classify_sent(
    record: ExportRecord,
    *,
    file_present: bool,
    acks_waiting: Collection[str],
    ack_deadline_seconds: int,
    now: datetime,
    rules: ReconcileRules,
) -> Finding | None:
    """Finding (e): SENT, its file gone from the dropzone and no ack waiting for it."""
    if record.status is not ExportStatus.SENT or file_present or record.id in acks_waiting:
        return None
    age = _age(now, record.sent_at)
    if age is None or age <= rules.unanswered_after.total_seconds():
        return None
    left = ack_deadline_seconds - age
    when = f"ACK_TIMEOUT in {left / 3600:.1f} h" if left > 0 else "ACK_TIMEOUT due now"
    return Finding(
        "sent_unanswered",
        record.org_id,
        record.id,
        "the ERP took the file and has not answered: ask it for the export id "
        f"{record.id} before the ack deadline",
        draft_order_id=record.draft_order_id,
        export_id=record.id,
        age_seconds=age,
        detail=when,
    )
