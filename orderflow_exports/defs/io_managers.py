"""The export-store IO manager: ``export_json`` outputs, byte for byte, under org-isolated keys."""

from typing import Any

import dagster as dg

from orderflow_exports.application.archive import archive_outcome
from orderflow_exports.application.export_service import ExportOutcome
from orderflow_exports.defs.resources import DatabaseResource, ExportStoreResource
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus


class ExportArchiveIOManager(dg.ConfigurableIOManager):
    """Stores each partition's exported file at ``{prefix}/{org}/{draft}/{export_id}.json``.

    The output of ``export_json`` maps partition keys to export outcomes; the file bytes come
    from the outcome's staging file (never pickled). Loading returns the archived bytes of the
    partition's latest successful export.
    """

    export_store: dg.ResourceDependency[ExportStoreResource]
    database: dg.ResourceDependency[DatabaseResource]

    def handle_output(self, context: dg.OutputContext, obj: dict[str, ExportOutcome]) -> None:
        store = self.export_store.store()
        for partition_key in context.asset_partition_keys:
            outcome = obj.get(partition_key)
            if outcome is None:
                continue  # failed inside the batch; reported by the asset
            archive_outcome(store, DraftRef.from_partition_key(partition_key), outcome, context.log)

    def load_input(self, context: dg.InputContext) -> Any:
        store = self.export_store.store()
        ledger = self.database.ledger()
        loaded: dict[str, bytes] = {}
        for partition_key in context.asset_partition_keys:
            ref = DraftRef.from_partition_key(partition_key)
            latest = ledger.latest(ref)
            if latest is None or latest.status not in (ExportStatus.SENT, ExportStatus.ACKED):
                raise dg.Failure(f"{ref} has no SENT or ACKED export to load")
            loaded[partition_key] = store.get_bytes(store.key_for(ref, latest.id))
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        return loaded
