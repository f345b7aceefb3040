"""What ack passes and the ``erp_ack`` check report: totals, problems, a draft's ack state.

Plain values over :class:`~orderflow_exports.application.acks.results.AckPassSummary` and export
rows; the sensor, the job and the asset check turn them into Dagster results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orderflow_exports.application.acks.results import AckPassSummary
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

ACK_STATE_WAITING = "WAITING_FOR_ACK"
ACK_STATE_ACKED = "ACKED"
ACK_STATE_NEEDS_ACTION = "NEEDS_ACTION"
#: How many partition keys a description lists before it stops.
_KEYS_SHOWN = 20
#: The tick list keeps a short line per tick.
_TICK_TEXT_CHARS = 2000


def ack_state(status: ExportStatus | None) -> str:
    """The draft's ack state as its partition shows it, from its latest export's status."""
    if status is ExportStatus.ACKED:
        return ACK_STATE_ACKED
    if status is ExportStatus.FAILED:
        return ACK_STATE_NEEDS_ACTION
    return ACK_STATE_WAITING


@dataclass(frozen=True)
class PassTotals:
    """What one pass over every org did, counted."""

    orgs: int
    applied: int
    acked: int
    replayed: int
    rejected: int
    timed_out: int
    deferred: int

    def as_metadata(self) -> dict[str, int]:
        return {
            "orgs": self.orgs,
            "applied": self.applied,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
            "deferred": self.deferred,
        }


def pass_totals(summaries: Sequence[AckPassSummary]) -> PassTotals:
    applied = [o for s in summaries for o in s.applied]
    return PassTotals(
        orgs=len(summaries),
        applied=len(applied),
        acked=sum(1 for o in applied if o.status is ExportStatus.ACKED),
        replayed=sum(len(s.replayed) for s in summaries),
        rejected=sum(len(s.rejected) for s in summaries),
        timed_out=sum(len(s.timeouts) for s in summaries),
        deferred=sum(s.deferred for s in summaries),
    )


def incomplete_orgs(summaries: Sequence[AckPassSummary]) -> list[str]:
    """Orgs whose acks were not all read or moved: a job that promised a pass fails on them."""
    return [s.describe() for s in summaries if s.failure or s.stuck]


def tick_problems(summaries: Sequence[AckPassSummary]) -> list[str]:
    """What a sensor tick logs as errors: incomplete orgs, orgs not reached, refused acks."""
    return [s.describe() for s in summaries if s.failure or s.stuck or s.not_reached or s.rejected]


def tick_text(summaries: Sequence[AckPassSummary], problems: Sequence[str] = ()) -> str:
    """One line for the tick list: what a pass applied, skipped and why, per kind."""
    totals = pass_totals(summaries)
    parts = [
        f"applied {totals.applied} ack(s) ({totals.acked} ACKED, "
        f"{totals.applied - totals.acked} FAILED by the ERP)",
        f"{totals.replayed} replayed (no change)",
        f"{totals.rejected} moved to error/",
        f"{totals.timed_out} ACK_TIMEOUT",
        f"{totals.deferred} deferred to the next tick",
        f"in {totals.orgs} org(s)",
    ]
    text = ", ".join(parts)
    if problems:
        text += "; problems: " + "; ".join(problems)
    return text[:_TICK_TEXT_CHARS]


def idle_text(summaries: Sequence[AckPassSummary], problems: Sequence[str]) -> str:
    """Why a tick that changed nothing changed nothing."""
    if not summaries:
        return "no enabled connector configs"
    if problems:
        return "no ack applied; " + "; ".join(problems)
    return f"no acks to apply and no exports past their deadline in {len(summaries)} org(s)"


@dataclass(frozen=True)
class AckCheckVerdict:
    """The ``erp_ack`` check over some partitions: which need action, wait, or were never sent."""

    total: int
    failed: list[str]
    missing: list[str]
    waiting: list[str]

    @property
    def passed(self) -> bool:
        # Waiting within the deadline is not a failure; a FAILED or missing export is.
        return not self.failed and not self.missing

    @property
    def acked(self) -> int:
        return self.total - len(self.failed) - len(self.waiting) - len(self.missing)

    def counts(self) -> dict[str, int]:
        return {
            "needs_action": len(self.failed),
            "waiting_for_ack": len(self.waiting),
            "acked": self.acked,
            "not_exported": len(self.missing),
        }

    def description(self) -> str:
        if self.failed:
            shown = ", ".join(self.failed[:_KEYS_SHOWN])
            return f"NEEDS ACTION: {len(self.failed)} export(s) FAILED: {shown}"
        if self.missing:
            shown = ", ".join(self.missing[:_KEYS_SHOWN])
            return f"{len(self.missing)} draft(s) not exported: {shown}"
        if self.waiting:
            return f"{len(self.waiting)} export(s) waiting for the ERP's ack (not a failure)"
        return "acknowledged by the ERP"


def ack_check_verdict(latest: Mapping[str, ExportRecord | None]) -> AckCheckVerdict:
    """The verdict over each partition's latest export (None: never exported)."""
    return AckCheckVerdict(
        total=len(latest),
        failed=[k for k, r in latest.items() if r is not None and r.status is ExportStatus.FAILED],
        missing=[k for k, r in latest.items() if r is None],
        waiting=[
            k
            for k, r in latest.items()
            if r is not None and ack_state(r.status) == ACK_STATE_WAITING
        ],
    )
