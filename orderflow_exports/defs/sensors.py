"""``approved_drafts_sensor``: new approvals become partitions and (batched) runs."""

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

import dagster as dg

from orderflow_exports.defs.jobs import export_drafts_job
from orderflow_exports.defs.partitions import (
    APPROVED_DRAFTS_PARTITIONS_NAME,
    approved_drafts_partitions,
)
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.domain.drafts import DraftOrder, refusal_reason
from orderflow_exports.domain.errors import InvalidIdentifier
from orderflow_exports.domain.naming import DraftRef

DROPZONE_HOST_TAG = "orderflow/dropzone_host"
MAX_DRAFTS_PER_TICK = 1000
_PAGE_SIZE = 2000
_MAX_SCANNED_PER_TICK = 50_000  # keeps a tick far inside the 60 s evaluation timeout


def _unexported_approved(database: DatabaseResource) -> Iterator[DraftOrder]:
    drafts = database.drafts()
    after: tuple[datetime, str] | None = None
    for _ in range(_MAX_SCANNED_PER_TICK // _PAGE_SIZE):
        page = drafts.find_unexported_approved(limit=_PAGE_SIZE, after=after)
        yield from page
        if len(page) < _PAGE_SIZE:
            return
        last = page[-1]
        after = (last.approved_at or last.updated_at, last.id)


def _run_request(keys: list[str], host: str) -> dg.RunRequest:
    tags = {DROPZONE_HOST_TAG: host}
    if len(keys) == 1:
        return dg.RunRequest(run_key=f"export:{keys[0]}", partition_key=keys[0], tags=tags)
    # Partitions added in one request are contiguous, so one run covers them all.
    return dg.RunRequest(
        run_key=f"export:{keys[0]}..{keys[-1]}",
        tags={
            **tags,
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )


@dg.sensor(
    job=export_drafts_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Finds APPROVED drafts of orgs with an enabled connector that have no export "
    "yet, adds their partitions and requests one run per dropzone host per tick.",
)
def approved_drafts_sensor(
    context: dg.SensorEvaluationContext, database: DatabaseResource
) -> dg.SensorResult | dg.SkipReason:
    configs = {c.org_id: c for c in database.connector_configs().list(enabled_only=True)}
    known = set(context.instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME))
    by_host: dict[str, list[str]] = defaultdict(list)
    skipped: list[str] = []
    accepted = 0
    # Page through the backlog: drafts that stay unexported (no connector, refused, or added
    # earlier and never run) must not hide newer approvals behind a fixed window.
    for draft in _unexported_approved(database):
        if accepted >= MAX_DRAFTS_PER_TICK:
            break
        try:
            ref = DraftRef(draft.org_id, draft.id)
        except InvalidIdentifier as exc:
            skipped.append(f"{draft.org_id}:{draft.id}: {exc}")
            continue
        if ref.partition_key in known:
            continue
        config = configs.get(ref.org_id)
        if config is None:
            skipped.append(f"{ref}: org {ref.org_id} has no enabled connector")
            continue
        reason = refusal_reason(ref, draft)
        if reason is not None:
            skipped.append(f"{ref}: {reason}")
            continue
        host = config.host if config.transport == "sftp" and config.host else "local"
        by_host[host].append(ref.partition_key)
        accepted += 1
    for line in skipped[:50]:
        context.log.info(f"not exported: {line}")
    if len(skipped) > 50:
        context.log.info(f"not exported: {len(skipped) - 50} more drafts")
    if not by_host:
        detail = f"; skipped {len(skipped)}: " + "; ".join(skipped[:20]) if skipped else ""
        return dg.SkipReason(f"no new approved drafts to export{detail}")
    new_keys = [key for keys in by_host.values() for key in keys]
    return dg.SensorResult(
        run_requests=[_run_request(keys, host) for host, keys in by_host.items()],
        dynamic_partitions_requests=[approved_drafts_partitions.build_add_request(new_keys)],
    )
