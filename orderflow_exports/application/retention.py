"""Which drafts' dynamic partitions may be removed: the retention rule.

A draft's partition may go once the draft is settled and has stayed so for ``max_age``:

- its latest attempt is ACKED (every earlier attempt is then FAILED, usually SUPERSEDED by a
  later one), and was acknowledged before ``now - max_age``;
- no attempt is PENDING or SENT (an active export keeps its partition, whatever its age);
- a draft whose latest attempt FAILED is never removed: it may need a retry or a person.

``erp_export`` keeps every row; only Dagster's partition (and its materialization history)
goes. A removed draft that needs work again gets its partition back through the paths that add
partitions (the export sensor, :func:`restore`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportLedger, ExportPartitions, Logger
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

DEFAULT_MAX_AGE = timedelta(days=30)
_ACTIVE = (ExportStatus.PENDING, ExportStatus.SENT)


@dataclass(frozen=True)
class RetentionDecision:
    """What the rule says about one draft, with the reason (for the run's log)."""

    ref: DraftRef
    remove: bool
    reason: str


def decide(
    attempts: Sequence[ExportRecord], now: datetime, max_age: timedelta
) -> RetentionDecision:
    """The rule for one draft's attempts (all of them, any order)."""
    if not attempts:
        raise ValueError("a retention decision needs the draft's attempts")
    ref = attempts[0].ref
    latest = max(attempts, key=lambda a: a.attempt)
    if any(a.status in _ACTIVE for a in attempts):
        return RetentionDecision(ref, False, "has an active (PENDING/SENT) export")
    if latest.status is not ExportStatus.ACKED:
        return RetentionDecision(ref, False, f"latest attempt is {latest.status}, not settled")
    settled_at = latest.acked_at or latest.updated_at
    if settled_at > now - max_age:
        return RetentionDecision(ref, False, f"settled {settled_at.isoformat()}, too recent")
    return RetentionDecision(ref, True, f"ACKED {settled_at.isoformat()}")


def removable(
    histories: Iterable[Sequence[ExportRecord]], now: datetime, max_age: timedelta
) -> list[DraftRef]:
    """The drafts among ``histories`` (each: one draft's attempts) whose partition may go."""
    if max_age <= timedelta(0):
        raise ValueError("max_age must be positive")
    return [d.ref for d in (decide(h, now, max_age) for h in histories if h) if d.remove]


def remove_settled(
    ledger: ExportLedger,
    partitions: ExportPartitions,
    now: datetime,
    max_age: timedelta,
    *,
    page: int = 1000,
    log: Logger | None = None,
) -> list[str]:
    """Remove the partitions the rule allows at ``now``, a page of drafts at a time; returns
    the removed keys. Only drafts the ledger reports settled are ever looked at."""
    removed: list[str] = []
    after: tuple[str, str] | None = None
    while True:
        histories = ledger.settled_histories(now - max_age, limit=page, after=after)
        if not histories:
            break
        last = histories[-1][0]
        after = (last.org_id, last.draft_order_id)
        keys = [ref.partition_key for ref in removable(histories, now, max_age)]
        existing = partitions.existing(keys)
        for key in keys:
            if key in existing:
                partitions.remove(key)
                removed.append(key)
        if len(histories) < page:
            break
    if log is not None:
        log.info(
            f"retention: removed {len(removed)} partition(s) of drafts settled before "
            f"{(now - max_age).isoformat()}"
        )
    return removed


def restore(partitions: ExportPartitions, keys: Sequence[str]) -> list[str]:
    """Give removed drafts their partitions back; returns the keys that were missing."""
    wanted = list(dict.fromkeys(keys))
    existing = partitions.existing(wanted)
    missing = [k for k in wanted if k not in existing]
    if missing:
        partitions.add(missing)
    return missing
