"""Archiving an exported file in the export store, and releasing its spool copy.

The archive is multi-tenant: its keys are ``{prefix}/{org_id}/{draft_order_id}/{export_id}.json``.
The org of a key always comes from the partition being processed; the outcome handed over for that
partition must be about that very draft (its ref *and* its ledger row), and the write goes through
a store view scoped to the partition's org, which refuses every key of another org.
"""

from __future__ import annotations

from dataclasses import replace

from orderflow_exports.application.export_service import ExportOutcome
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportStore, Logger


class ArchiveRefused(OrderflowError, ValueError):
    """An outcome that does not belong to the partition it was handed to; nothing is written."""


def check_outcome_for(partition_ref: DraftRef, outcome: ExportOutcome) -> None:
    """Refuse an outcome whose draft or ledger row is not the partition's draft."""
    record = outcome.record
    if outcome.ref != partition_ref or record.ref != partition_ref:
        raise ArchiveRefused(
            f"outcome for {outcome.ref} (export {record.id} of {record.ref}) handed to partition "
            f"{partition_ref}; refusing to archive it"
        )


def archive_outcome(
    store: ExportStore, partition_ref: DraftRef, outcome: ExportOutcome, log: Logger
) -> ExportOutcome:
    """Store the outcome's file at its archive key (write-once); the outcome as archived.

    ``store`` may cover every org or only the partition's org; either way the write goes through
    ``store.for_org(partition_ref.org_id)``. An outcome of another draft raises
    :class:`ArchiveRefused` before anything is written. An outcome this step already handled
    (its ``archive_key`` set) is returned as it is: nothing is written or asked again.
    """
    check_outcome_for(partition_ref, outcome)
    scoped = store.for_org(partition_ref.org_id)
    key = scoped.key_for(partition_ref, outcome.export_id)
    if outcome.archive_key == key:
        return outcome
    if outcome.spool_file is not None:
        scoped.put_file(
            key,
            outcome.spool_file,
            sha256=outcome.record.content_sha256,
            export_id=outcome.export_id,
        )
        outcome.spool_file.unlink(missing_ok=True)
        for folder in (outcome.spool_file.parent, outcome.spool_file.parent.parent):
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                break
    elif not scoped.exists(key):
        log.warning(
            f"{partition_ref}: export {outcome.export_id} has no archived copy at {key} and its "
            "spool file is gone; the dropzone copy is the only one"
        )
    return replace(outcome, spool_file=None, archive_key=key)
