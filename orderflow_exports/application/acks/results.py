"""What an ack pass reports: per-file outcomes, ack timeouts, per-org summaries; its logger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from orderflow_exports.application.acks.memory import OrgMemory
from orderflow_exports.domain.status import ExportStatus

# vanished: moved by a concurrent pass; stuck: cannot be moved for good (permissions);
# waiting: does not parse yet but may still be being written; skipped: not a regular file now.
OutcomeKind = Literal["applied", "replayed", "rejected", "vanished", "stuck", "waiting", "skipped"]


@dataclass(frozen=True)
class AckOutcome:
    """What happened to one ack file."""

    org_id: str
    file_name: str
    kind: OutcomeKind
    reason: str
    export_id: str | None = None
    # Known only when the export belongs to the folder's org; never another org's draft id.
    draft_order_id: str | None = None
    status: ExportStatus | None = None
    erp_order_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    received_at: datetime | None = None
    reject_code: str | None = None
    moved_to: str | None = None

    @property
    def partition_key(self) -> str | None:
        """The ``export_json`` partition this outcome concerns, if any."""
        if self.draft_order_id is None:
            return None
        return f"{self.org_id}:{self.draft_order_id}"


@dataclass(frozen=True)
class AckTimeout:
    """A SENT export that waited longer than its org's ack deadline and is now FAILED."""

    org_id: str
    export_id: str
    draft_order_id: str
    sent_at: datetime | None
    message: str

    @property
    def partition_key(self) -> str:
        return f"{self.org_id}:{self.draft_order_id}"


@dataclass
class AckPassSummary:
    """The result of one pass over one org: per-file outcomes, timeouts, and what was left."""

    org_id: str
    outcomes: list[AckOutcome] = field(default_factory=list)
    timeouts: list[AckTimeout] = field(default_factory=list)
    deferred: int = 0  # candidate files left for the next pass (bounds, unsettled acks)
    failure: str | None = None  # why the pass stopped early (the next pass tries again)
    failure_code: str | None = None  # the ExportError code of the failure (CONFIG, TIMEOUT, ...)
    deadline_checked: bool = False
    not_reached: bool = False  # the pass's time budget ran out before this org's turn
    timed_out: bool = False  # the org's pass did not finish within its own time budget
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), first seen
    memory: OrgMemory | None = None  # what the next pass should remember of this org

    def _of(self, kind: OutcomeKind) -> list[AckOutcome]:
        return [o for o in self.outcomes if o.kind == kind]

    @property
    def applied(self) -> list[AckOutcome]:
        return self._of("applied")

    @property
    def replayed(self) -> list[AckOutcome]:
        return self._of("replayed")

    @property
    def rejected(self) -> list[AckOutcome]:
        return self._of("rejected")

    @property
    def stuck(self) -> list[AckOutcome]:
        return self._of("stuck")

    @property
    def waiting(self) -> list[AckOutcome]:
        return self._of("waiting")

    @property
    def did_anything(self) -> bool:
        return bool(
            self.applied
            or self.replayed
            or self.rejected
            or self.stuck
            or self.timeouts
            or self.failure
            or self.skipped
        )

    def describe(self) -> str:
        if self.not_reached:
            return f"org {self.org_id}: not reached, time budget used up; next pass"
        parts = [
            f"org {self.org_id}: {len(self.applied)} applied",
            f"{len(self.replayed)} replayed",
            f"{len(self.rejected)} rejected",
            f"{len(self.timeouts)} timed out",
        ]
        if self.stuck:
            parts.append(f"{len(self.stuck)} stuck")
        if self.waiting:
            parts.append(f"{len(self.waiting)} not settled yet")
        if self.deferred:
            parts.append(f"{self.deferred} left for the next pass")
        if self.failure:
            parts.append(f"stopped early: {self.failure}")
        if not self.deadline_checked:
            parts.append("no ack deadline applied")
        return ", ".join(parts)
