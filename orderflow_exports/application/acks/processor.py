"""A pass over every org's ack folder, each org isolated under its own deadline.

Plain Python over the ports: the Dagster sensor and ``process_acks_job`` call it and turn the
returned summaries into events. Each org's pass runs under its own deadline, so one hanging
server or unreadable folder never holds up the others; while an org's folder cannot be read,
none of its exports is timed out. Orgs are visited in a rotation that resumes after the org a
previous pass ended with, and orgs whose last pass timed out go last, so a slow org cannot
starve the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orderflow_exports.application.acks.folder import MAX_REASON_CHARS, AckFolderPass
from orderflow_exports.application.acks.isolation import OrgWorker, QuietAfterAbandon, still_busy
from orderflow_exports.application.acks.memory import AckPassMemory, OrgMemory
from orderflow_exports.application.acks.results import AckPassSummary
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.domain.ack_files import excerpt
from orderflow_exports.domain.connector_rules import LocalFolders, connector_problems
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.ports import DropzoneConnector, DropzoneSession, ExportLedger, Logger
from orderflow_exports.domain.records import ConnectorConfig

_log = logging.getLogger(__name__)


def rotate(
    configs: Sequence[ConnectorConfig], after: str | None, last: Iterable[str] = ()
) -> list[ConnectorConfig]:
    """Start after the org a previous pass ended with, so a slow org cannot starve later ones.

    Orgs in ``last`` (their previous pass timed out) go to the end, so healthy orgs are served
    before the budget goes to servers that did not answer last time.
    """
    ordered = sorted(configs, key=lambda c: c.org_id)
    if after:
        split = next((i for i, c in enumerate(ordered) if c.org_id > after), 0)
        ordered = ordered[split:] + ordered[:split]
    slow = set(last)
    return [c for c in ordered if c.org_id not in slow] + [c for c in ordered if c.org_id in slow]


def resume_after(summaries: Sequence[AckPassSummary]) -> str | None:
    """The org the next pass starts after: the last one this pass reached.

    None when every org was reached: the rotation only matters when the budget ran out.
    """
    reached = [s for s in summaries if not s.not_reached]
    return reached[-1].org_id if reached and len(reached) < len(summaries) else None


def timed_out_orgs(summaries: Sequence[AckPassSummary]) -> list[str]:
    """The orgs whose pass timed out: the next pass serves them last (see :func:`rotate`)."""
    return [s.org_id for s in summaries if s.timed_out]


@dataclass(frozen=True)
class _Shared:
    """One connector every org's pass uses (rather than one per org)."""

    connector: DropzoneConnector


class AckProcessor:
    """Applies ack files to ``erp_export`` and expires overdue SENT exports, one org at a time.

    ``clock`` gives the time stored in rows (``acked_at``, ``updated_at``) and the "now" ack
    files are settled against; ``monotonic`` only measures the pass against its budgets.
    """

    def __init__(
        self,
        ledger: ExportLedger,
        settings: AckSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        log: Logger | None = None,
        local_folders: Callable[[Sequence[ConnectorConfig]], LocalFolders] | None = None,
    ) -> None:
        self._ledger = ledger
        self._settings = settings or AckSettings()
        self._clock = clock
        self._monotonic = monotonic
        self._log = log or _log
        self._folder = AckFolderPass(
            self._ledger, self._settings, clock=clock, monotonic=monotonic, log=self._log
        )
        # Resolves local folders' real paths and names the code location's own folders (the
        # connector rules read no filesystem); resolved once per pass.
        self._local_folders = local_folders
        self._pass_local: LocalFolders | None = None

    # --- whole passes --------------------------------------------------------------------------

    def run_pass(
        self,
        configs: Sequence[ConnectorConfig],
        *,
        connector_factory: Callable[[], DropzoneConnector],
        start_after: str | None = None,
        memory: AckPassMemory | None = None,
        last: Sequence[str] = (),
    ) -> list[AckPassSummary]:
        """One pass over every enabled org in rotation (see :func:`rotate`); logs what it did."""
        summaries = self.process_all(
            rotate(configs, start_after, last), connector_factory=connector_factory, memory=memory
        )
        for summary in summaries:
            if summary.did_anything or summary.not_reached:
                report = self._log.error if summary.failure or summary.stuck else self._log.info
                report(summary.describe())
        return summaries

    def process_all(
        self,
        configs: Iterable[ConnectorConfig],
        connector: DropzoneConnector | None = None,
        *,
        connector_factory: Callable[[], DropzoneConnector] | None = None,
        memory: AckPassMemory | None = None,
    ) -> list[AckPassSummary]:
        """One pass over every enabled org; an org's failure or hang never stops the others.

        Either ``connector`` is shared by every org, or ``connector_factory`` is called once per
        org (that connector is closed when the org's pass ends): with per-org deadlines, a
        factory keeps an abandoned org's connection apart from the orgs after it.
        """
        if (connector is None) == (connector_factory is None):
            raise ValueError("pass exactly one of connector and connector_factory")
        source: _Shared | Callable[[], DropzoneConnector]
        source = _Shared(connector) if connector is not None else connector_factory  # type: ignore[assignment]
        started = self._monotonic()
        every = list(configs)
        enabled = [config for config in every if config.enabled]
        memory = memory or AckPassMemory()
        summaries = []
        if self._local_folders is not None:
            self._pass_local = self._local_folders(every)
        try:
            for config in enabled:
                if self._folder.over_budget(started):
                    # Opening a session can take seconds; later orgs wait for the next pass.
                    summaries.append(AckPassSummary(config.org_id, not_reached=True))
                    continue
                # Every row, enabled or not, is compared: a disabled org's folders hold files.
                others = [other for other in every if other.org_id != config.org_id]
                summaries.append(
                    self._process_org_bounded(
                        config, source, others, started, memory.for_org(config.org_id)
                    )
                )
        finally:
            self._pass_local = None
        return summaries

    def _process_org_bounded(
        self,
        config: ConnectorConfig,
        connector: _Shared | Callable[[], DropzoneConnector],
        others: Sequence[ConnectorConfig],
        started: float,
        memory: OrgMemory,
    ) -> AckPassSummary:
        budget = self._join_timeout(started)
        if budget is None:
            return self._run_org(config, connector, others, started, memory, None)
        org_id = config.org_id
        if budget <= 0:
            return AckPassSummary(org_id, not_reached=True)  # the pass's hard end has come
        if still_busy(org_id):
            summary = AckPassSummary(
                org_id,
                failure="an earlier pass of this org is still blocked on its dropzone; "
                "not starting another",
                failure_code=ErrorCode.TIMEOUT,
                timed_out=True,
            )
            self._log.error("ack pass for org %s: %s", org_id, summary.failure)
            return summary
        org_deadline = self._monotonic() + budget
        worker = OrgWorker(
            lambda w: self._run_org(config, connector, others, started, memory, w, org_deadline),
            org_id,
        )
        worker.thread.start()
        worker.thread.join(budget)
        if worker.thread.is_alive():
            worker.abandon()
            summary = AckPassSummary(
                org_id,
                failure=f"no result within {budget:.3g} s (dropzone not answering); the "
                "connection was closed, the next pass tries again",
                failure_code=ErrorCode.TIMEOUT,
                timed_out=True,
                memory=memory,
            )
            self._log.error("ack pass for org %s: %s", org_id, summary.failure)
            return summary
        if worker.error is not None:
            summary = AckPassSummary(
                org_id,
                failure=f"unexpected error: {excerpt(str(worker.error), MAX_REASON_CHARS)}",
                failure_code=ErrorCode.IO,
                memory=memory,
            )
            self._log.error("ack pass for org %s failed: %s", org_id, summary.failure)
            return summary
        assert worker.summary is not None
        return worker.summary

    def _join_timeout(self, started: float) -> float | None:
        org_budget = self._settings.org_time_budget_seconds
        deadline = self._settings.pass_deadline_seconds
        if org_budget is None and deadline is None:
            return None
        left = None if deadline is None else max(deadline - (self._monotonic() - started), 0.0)
        if org_budget is None:
            return left
        return org_budget if left is None else min(org_budget, left)

    def _run_org(
        self,
        config: ConnectorConfig,
        connector: _Shared | Callable[[], DropzoneConnector],
        others: Sequence[ConnectorConfig],
        started: float,
        memory: OrgMemory,
        worker: OrgWorker | None,
        org_deadline: float | None = None,
    ) -> AckPassSummary:
        own = not isinstance(connector, _Shared)
        opened = connector.connector if isinstance(connector, _Shared) else connector()
        log = self._log if worker is None else QuietAfterAbandon(self._log, worker.abandoned)
        try:
            return self.process_org(
                config,
                opened,
                others=others,
                started=started,
                memory=memory,
                worker=worker,
                org_deadline=org_deadline,
                log=log,
            )
        finally:
            if own:
                opened.close()
            elif worker is not None and worker.abandoned.is_set():
                opened.discard(config)

    def process_org(
        self,
        config: ConnectorConfig,
        connector: DropzoneConnector,
        *,
        others: Sequence[ConnectorConfig] = (),
        started: float | None = None,
        memory: OrgMemory | None = None,
        worker: OrgWorker | None = None,
        org_deadline: float | None = None,
        log: Logger | None = None,
    ) -> AckPassSummary:
        """Check the org's connector, open its dropzone session, process its ack folder."""
        log = log or self._log
        local = self._pass_local
        if local is None and self._local_folders is not None:
            local = self._local_folders([config, *others])
        # Only rows older than this one count: a row written later cannot stop this org.
        problems = connector_problems(config, others, local=local, conflicts_with="earlier")
        if problems:
            # A folder shared with the export folder or another org is not touched at all.
            summary = AckPassSummary(
                config.org_id,
                failure="connector config refused: " + "; ".join(problems),
                failure_code=ErrorCode.CONFIG,
                memory=memory,
            )
            log.error("ack pass for org %s: %s", config.org_id, summary.failure)
            return summary
        try:
            session = connector.session_for(config)
        except Exception as exc:  # noqa: BLE001 - one org's broken config must not stop the rest
            # Without the folder we cannot know whether acks are waiting: no timeouts either.
            code = exc.code if isinstance(exc, ExportError) else ErrorCode.IO
            summary = AckPassSummary(
                config.org_id,
                failure=f"cannot open dropzone: {exc}",
                failure_code=code,
                memory=memory,
            )
            log.error("ack pass for org %s: %s", config.org_id, summary.failure)
            return summary
        if worker is not None:
            worker.using(session)
        summary = self.process_folder(
            config, session, started=started, memory=memory, org_deadline=org_deadline, log=log
        )
        if summary.failure is not None:
            connector.discard(config)  # the next pass reconnects
        return summary

    def process_folder(
        self,
        config: ConnectorConfig,
        session: DropzoneSession,
        *,
        started: float | None = None,
        memory: OrgMemory | None = None,
        org_deadline: float | None = None,
        log: Logger | None = None,
    ) -> AckPassSummary:
        """Apply the acks waiting in ``config.ack_path``, then expire overdue exports.

        See :meth:`AckFolderPass.process_folder`.
        """
        return self._folder.process_folder(
            config, session, started=started, memory=memory, org_deadline=org_deadline, log=log
        )
