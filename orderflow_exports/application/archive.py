"""Archiving an exported file in the export store, and releasing its spool copy."""

from __future__ import annotations

from orderflow_exports.application.export_service import ExportOutcome, Logger
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportStore


def archive_outcome(
    store: ExportStore, partition_ref: DraftRef, outcome: ExportOutcome, log: Logger
) -> str:
    """Store the outcome's file at its archive key (write-once) and return the key.

    The key's org comes from the partition; an outcome of another draft is refused.
    """
    if outcome.ref != partition_ref:
        raise ValueError(f"outcome for {outcome.ref} handed to partition {partition_ref}")
    key = store.key_for(partition_ref, outcome.export_id)
    if outcome.spool_file is not None:
        store.put_file(
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
    elif not store.exists(key):
        log.warning(
            f"{partition_ref}: export {outcome.export_id} has no archived copy at {key} and its "
            "staging file is gone; the dropzone copy is the only one"
        )
    return key
