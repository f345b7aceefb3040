"""The export-store IO manager: ``export_json`` outputs, byte for byte, under org-isolated keys."""

from typing import Any, NoReturn

import dagster as dg

from orderflow_exports.application.archive import archive_outcome
from orderflow_exports.application.export_service import ExportOutcome
from orderflow_exports.defs.resources import DatabaseResource, ExportStoreResource
from orderflow_exports.domain.errors import ExportError, OrderflowError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus


def _partition_ref(partition_key: str) -> DraftRef:
    try:
        return DraftRef.from_partition_key(partition_key)
    except OrderflowError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def reraise_store_error(partition_key: str, action: str, exc: OrderflowError) -> NoReturn:
    """A transient store error stays retryable (RetryPolicy); anything else fails at once."""
    if isinstance(exc, ExportError) and exc.transient:
        raise exc
    raise dg.Failure(description=f"{partition_key}: {action}: {exc}", allow_retries=False) from exc


class ExportArchiveIOManager(dg.ConfigurableIOManager):
    """Stores each partition's exported file at ``{prefix}/{org}/{draft}/{export_id}.json``.

    The output of ``export_json`` maps partition keys to export outcomes; the file bytes come
    from the outcome's spool file (never pickled). ``export_json``'s batch has archived its
    outcomes already (on the failure path too, where no output is handed over); persisting an
    archived outcome writes nothing again. Loading returns the archived bytes of the partition's
    latest successful export.

    Tenant isolation: the org of every key comes from the partition key, and every read or write
    goes through ``export_store.for_org(org)``. An outcome that is not about the partition's
    draft, or an output holding partitions the run did not select, fails the step (without
    retries) before anything is written.
    """

    export_store: dg.ResourceDependency[ExportStoreResource]
    database: dg.ResourceDependency[DatabaseResource]

    def handle_output(self, context: dg.OutputContext, obj: dict[str, ExportOutcome]) -> None:
        selected = list(context.asset_partition_keys)
        unexpected = sorted(set(obj) - set(selected))
        if unexpected:
            raise dg.Failure(
                description=f"output holds partitions the run did not select: {unexpected}; "
                "nothing archived",
                allow_retries=False,
            )
        refs = {key: _partition_ref(key) for key in selected}
        for partition_key, ref in refs.items():
            outcome = obj.get(partition_key)
            if outcome is None:
                continue  # not exported by this run: nothing to persist
            try:
                archive_outcome(self.export_store.for_org(ref.org_id), ref, outcome, context.log)
            except OrderflowError as exc:
                reraise_store_error(partition_key, "archiving failed", exc)

    def load_input(self, context: dg.InputContext) -> Any:
        ledger = self.database.ledger()
        loaded: dict[str, bytes] = {}
        for partition_key in context.asset_partition_keys:
            ref = _partition_ref(partition_key)
            latest = ledger.latest(ref)
            if latest is None or latest.status not in (ExportStatus.SENT, ExportStatus.ACKED):
                raise dg.Failure(f"{ref} has no SENT or ACKED export to load")
            # The key is rebuilt from the partition and the export id; the row's storage_key is
            # never used as a key, so a row pointing elsewhere cannot make us read it.
            store = self.export_store.for_org(ref.org_id)
            try:
                loaded[partition_key] = store.get_bytes(store.key_for(ref, latest.id))
            except OrderflowError as exc:
                reraise_store_error(partition_key, "loading the archived export", exc)
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        return loaded
