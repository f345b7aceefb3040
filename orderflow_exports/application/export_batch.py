"""Exporting a batch of drafts (one run's partitions): publish, report, archive, aggregate.

The one owner of what a run does to its drafts. Each draft is exported on its own by
:class:`~orderflow_exports.application.export_service.ExportService` (one draft's failure never
stops the others); then how each try ended is recorded in ``erp_export_request`` (what the
sensor re-drives by); then every file that went out is archived, whether or not other drafts
failed; and the result says what to tell the orchestrator: the outcomes, the failures, one
failure message and whether trying again may help.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from orderflow_exports.application.archive import archive_outcome
from orderflow_exports.application.export_service import ExportOutcome, ExportService
from orderflow_exports.application.planning import outcome_of_error, report_outcomes_or_log
from orderflow_exports.application.publishing import utc_now
from orderflow_exports.domain.errors import ExportError, OrderflowError
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportRequests, ExportStore, Logger

_ACTION_SUMMARY = {
    "sent": "{} sent",
    "already_sent": "{} already SENT or ACKED earlier (not sending it again)",
    "recovered": "{} recovered (an interrupted attempt had landed)",
}

RequestReport = tuple[DraftRef, RequestOutcome, str]


@dataclass
class BatchResult:
    """What exporting a batch did, by partition key."""

    outcomes: dict[str, ExportOutcome] = field(default_factory=dict)
    failures: dict[str, OrderflowError] = field(default_factory=dict)
    # What was recorded (or tried to be) in erp_export_request.
    reports: list[RequestReport] = field(default_factory=list)
    # The first archive write that failed (partition key, error); the outcomes after it in the
    # batch were not archived and keep their spool files for the next try.
    archive_failure: tuple[str, OrderflowError] | None = None

    @property
    def transient(self) -> bool:
        """Whether a failure of the batch may pass (a retry may send what failed)."""
        return any(isinstance(exc, ExportError) and exc.transient for exc in self.failures.values())

    def failure_message(self) -> str:
        """One message naming every failed draft with its code and kind."""
        lines = []
        for key, exc in self.failures.items():
            kind = exc.kind if isinstance(exc, ExportError) else "permanent"
            code = exc.code if isinstance(exc, ExportError) else type(exc).__name__
            lines.append(f"{key}: {code} ({kind}): {exc}")
        return (
            f"{len(self.failures)} export(s) failed, {len(self.outcomes)} succeeded:\n"
            + "\n".join(lines)
        )

    def action_counts(self) -> Counter[str]:
        """How many outcomes of each action (sent, already_sent, recovered)."""
        return Counter(o.action for o in self.outcomes.values())

    def summary(self) -> str:
        """One line for the run's log: how many drafts, by what was done to them."""
        return f"{len(self.outcomes)} drafts: " + ", ".join(
            _ACTION_SUMMARY[action].format(count) for action, count in self.action_counts().items()
        )


@dataclass
class ExportBatch:
    """Exports a run's drafts, reports each try's end and archives what went out."""

    service: ExportService
    store: ExportStore
    requests: ExportRequests
    log: Logger
    # Where the request bookkeeping says what happens next per draft (re-driven, needs a
    # person): the run's own log even when per-draft lines of a batch go elsewhere.
    report_log: Logger | None = None
    clock: Callable[[], datetime] = utc_now

    def export_batch(
        self,
        refs: Mapping[str, DraftRef],
        *,
        force: bool = False,
        run_id: str | None = None,
        related_run_ids: Collection[str] = (),
    ) -> BatchResult:
        """Export every draft of ``refs`` (by partition key), then report and archive."""
        result = BatchResult()
        for key, ref in refs.items():
            try:
                result.outcomes[key] = self.service.export(
                    ref, force=force, run_id=run_id, related_run_ids=related_run_ids
                )
            except OrderflowError as exc:
                result.failures[key] = exc
                self.log.error(f"{key}: export failed: {exc}")
        result.reports = [
            (refs[key], RequestOutcome.SENT, str(o.action)) for key, o in result.outcomes.items()
        ]
        for key, failure in result.failures.items():
            request_outcome = outcome_of_error(failure)
            if request_outcome is not None:
                result.reports.append((refs[key], request_outcome, str(failure)))
        report_outcomes_or_log(
            self.requests, result.reports, at=self.clock(), log=self.report_log or self.log
        )
        for key, outcome in result.outcomes.items():
            try:
                result.outcomes[key] = archive_outcome(self.store, refs[key], outcome, self.log)
            except OrderflowError as exc:
                result.archive_failure = (key, exc)
                break
        return result
