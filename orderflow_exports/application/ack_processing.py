"""One pass over an org's ack folder, and the ack deadline (CONTRACT §5, §6).

Plain Python over the ports: the Dagster sensor and ``process_acks_job`` call it and turn the
returned summaries into events. Every step is safe to repeat, because a failed or timed-out
sensor tick does not save its cursor and the next tick sees the same files:

1. read and parse the file; decide against the row (``domain.acks.decide``);
2. apply the decision as a compare-and-set on the expected old status;
3. move the file to ``processed/`` (or ``error/`` with ``<name>.error.txt`` beside it).

A crash between 2 and 3 leaves the file in place; the next pass finds the row already changed,
which is a replay, and moves the file. A file that is gone when we get to it was moved by a
concurrent pass (the sensor and the job may overlap) and counts as done.

The ack folder belongs to the ERP (and to whoever else can write on its server), so it is read
defensively: only regular files are opened (never through a symlink, never blocking on a FIFO),
``processed/`` and ``error/`` must be real folders, an ack that does not parse is refused only
once it has settled (it may still be being written), and a note or a log line quotes at most a
short escaped excerpt of anything the ERP wrote. Each org's pass runs under its own deadline, so
one hanging server or unreadable folder never holds up the others; while an org's folder cannot
be read, none of its exports is timed out.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from orderflow_exports.domain.acks import (
    ACK_TIMEOUT,
    DEFAULT_MAX_ACK_BYTES,
    DEFAULT_SETTLE_SECONDS,
    Ack,
    AckRejected,
    AlreadyApplied,
    ApplyAck,
    RejectAck,
    ack_deadline_cutoff,
    ack_timeout_message,
    decide,
    excerpt,
    is_ack_name,
    is_quietly_ignored,
    is_settled,
    parse_ack,
    safe_text,
)
from orderflow_exports.domain.connector_rules import LocalFolders, connector_problems
from orderflow_exports.domain.errors import ExportError
from orderflow_exports.domain.ports import (
    DropzoneConnector,
    DropzoneSession,
    ExportLedger,
    FolderEntry,
    NotARegularFile,
)
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus

PROCESSED = "processed"
ERROR = "error"
ERROR_NOTE_SUFFIX = ".error.txt"
UNREADABLE = "UNREADABLE"
#: What a note or log line may quote of a refusal reason (which quotes values from the ack).
MAX_REASON_CHARS = 400
#: Entries per org an ack pass remembers between passes (skips logged, unsettled looks).
MAX_REMEMBERED_PER_ORG = 200

# vanished: moved by a concurrent pass; stuck: cannot be moved for good (permissions);
# waiting: does not parse yet but may still be being written; skipped: not a regular file now.
OutcomeKind = Literal["applied", "replayed", "rejected", "vanished", "stuck", "waiting", "skipped"]

_log = logging.getLogger(__name__)


class Logger(Protocol):
    """The part of a logger used here (``logging.Logger`` and Dagster's ``context.log``)."""

    def info(self, msg: str, *args: object) -> None: ...

    def warning(self, msg: str, *args: object) -> None: ...

    def error(self, msg: str, *args: object) -> None: ...


def is_ack_candidate(name: str) -> bool:
    """A name the ERP may have written as an ack (see ``domain.acks.is_ack_name``)."""
    return is_ack_name(name)


@dataclass(frozen=True)
class AckSettings:
    """Bounds of one pass; the defaults keep a sensor tick far inside its 60 s timeout."""

    max_files_per_org: int = 100
    max_bytes: int = DEFAULT_MAX_ACK_BYTES
    max_timeouts_per_org: int = 500
    # Stop starting new files or orgs once a pass has run this long; the rest waits.
    time_budget_seconds: float | None = None
    # Each org's pass runs in its own thread and is abandoned (its connection closed) after this.
    org_time_budget_seconds: float | None = None
    # Hard end of the whole pass: no org's pass is waited for beyond it.
    pass_deadline_seconds: float | None = None
    # An ack that does not parse is refused only when settled (see domain.acks.is_settled).
    settle_seconds: float = DEFAULT_SETTLE_SECONDS

    def __post_init__(self) -> None:
        if self.max_files_per_org < 1 or self.max_timeouts_per_org < 1 or self.max_bytes < 1:
            raise ValueError("ack pass limits must be positive")
        for name in ("time_budget_seconds", "org_time_budget_seconds", "pass_deadline_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive")
        if self.settle_seconds < 0:
            raise ValueError("settle_seconds must be 0 (judge at once) or positive")


def _entry_key(name: str, detail: str) -> str:
    # Hashed: the memory lives in a sensor cursor and must stay small whatever the names are.
    return hashlib.sha256(f"{name}\0{detail}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class OrgMemory:
    """What one org's passes remember: skips already logged, and earlier looks at unsettled acks."""

    skipped: list[str] = field(default_factory=list)
    unsettled: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)
    problem: str | None = None  # a digest of the last pass's failure, to report changes once

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.skipped:
            data["s"] = self.skipped[-MAX_REMEMBERED_PER_ORG:]
        if self.unsettled:
            items = list(self.unsettled.items())[-MAX_REMEMBERED_PER_ORG:]
            data["u"] = {k: [size, mtime] for k, (size, mtime) in items}
        if self.problem:
            data["p"] = self.problem
        return data

    @classmethod
    def from_json(cls, data: Any) -> OrgMemory:
        if not isinstance(data, dict):
            return cls()
        skipped = [k for k in data.get("s", []) if isinstance(k, str)]
        unsettled: dict[str, tuple[int | None, float | None]] = {}
        raw = data.get("u", {})
        if isinstance(raw, dict):
            for key, look in raw.items():
                if isinstance(look, list) and len(look) == 2:
                    unsettled[str(key)] = (look[0], look[1])
        problem = data.get("p") if isinstance(data.get("p"), str) else None
        return cls(skipped[-MAX_REMEMBERED_PER_ORG:], unsettled, problem)


@dataclass
class AckPassMemory:
    """Bounded state carried from one pass to the next (the sensor keeps it in its cursor)."""

    orgs: dict[str, OrgMemory] = field(default_factory=dict)

    def for_org(self, org_id: str) -> OrgMemory:
        return self.orgs.get(org_id, OrgMemory())

    def to_json(self, keep: Iterable[str] | None = None) -> dict[str, Any]:
        wanted = set(keep) if keep is not None else None
        return {
            org: memory.to_json()
            for org, memory in sorted(self.orgs.items())
            if (wanted is None or org in wanted) and memory.to_json()
        }

    @classmethod
    def from_json(cls, data: Any) -> AckPassMemory:
        if not isinstance(data, dict):
            return cls()
        return cls({str(org): OrgMemory.from_json(value) for org, value in data.items()})


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


class _Stop(Exception):
    """The session broke mid-pass; the remaining files wait for the next pass."""


class _Stuck(Exception):
    """This one file cannot be moved for good; the pass goes on with the next file."""


class _QuietAfterAbandon:
    """The pass's logger until its org is abandoned; then the module logger.

    An abandoned worker may still finish later, after the sensor tick (and its log) has ended.
    """

    def __init__(self, log: Logger, abandoned: threading.Event) -> None:
        self._log = log
        self._abandoned = abandoned

    def _target(self) -> Logger:
        return _log if self._abandoned.is_set() else self._log

    def info(self, msg: str, *args: object) -> None:
        self._target().info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self._target().warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self._target().error(msg, *args)


# Workers of orgs abandoned by an earlier pass that have not ended yet (e.g. blocked in a
# kernel call nobody can interrupt): at most one per org, so a stuck server cannot pile up
# threads tick after tick.
_ABANDONED: dict[str, threading.Thread] = {}
_ABANDONED_LOCK = threading.Lock()


class _OrgWorker:
    """One org's pass in its own thread, with what is needed to abandon it from outside."""

    def __init__(self, run: Callable[[_OrgWorker], AckPassSummary], org_id: str) -> None:
        self.org_id = org_id
        self.abandoned = threading.Event()
        self.summary: AckPassSummary | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._session: DropzoneSession | None = None
        self._run = run
        self.thread = threading.Thread(target=self._main, name=f"ack-pass-{org_id}", daemon=True)

    def _main(self) -> None:
        try:
            self.summary = self._run(self)
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
            self.error = exc
        finally:
            with _ABANDONED_LOCK:
                if _ABANDONED.get(self.org_id) is self.thread:
                    del _ABANDONED[self.org_id]

    def using(self, session: DropzoneSession) -> None:
        """Record the session in use; one opened after the worker was abandoned is aborted."""
        with self._lock:
            self._session = session
            late = self.abandoned.is_set()
        if late:
            _abort(session)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned.set()
            session = self._session
        if session is not None:
            _abort(session)
        with _ABANDONED_LOCK:
            if self.thread.is_alive():
                _ABANDONED[self.org_id] = self.thread


def _abort(session: DropzoneSession) -> None:
    # Only SFTP sessions can hang on a peer; a local session has nothing to abort.
    abort = getattr(session, "abort", None)
    if callable(abort):
        try:
            abort()
        except Exception:  # noqa: BLE001 - the session is being given up anyway
            _log.debug("aborting a dropzone session failed", exc_info=True)


def _still_busy(org_id: str) -> bool:
    with _ABANDONED_LOCK:
        thread = _ABANDONED.get(org_id)
        if thread is not None and not thread.is_alive():
            del _ABANDONED[org_id]
            return False
        return thread is not None


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
        # Resolves local folders' real paths and names the code location's own folders (the
        # connector rules read no filesystem); resolved once per pass.
        self._local_folders = local_folders
        self._pass_local: LocalFolders | None = None

    # --- whole passes --------------------------------------------------------------------------

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
                if self._over_budget(started):
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
        if _still_busy(org_id):
            summary = AckPassSummary(
                org_id,
                failure="an earlier pass of this org is still blocked on its dropzone; "
                "not starting another",
                failure_code=ExportError.TIMEOUT,
                timed_out=True,
            )
            self._log.error("ack pass for org %s: %s", org_id, summary.failure)
            return summary
        org_deadline = self._monotonic() + budget
        worker = _OrgWorker(
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
                failure_code=ExportError.TIMEOUT,
                timed_out=True,
                memory=memory,
            )
            self._log.error("ack pass for org %s: %s", org_id, summary.failure)
            return summary
        if worker.error is not None:
            summary = AckPassSummary(
                org_id,
                failure=f"unexpected error: {excerpt(str(worker.error), MAX_REASON_CHARS)}",
                failure_code=ExportError.IO,
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
        worker: _OrgWorker | None,
        org_deadline: float | None = None,
    ) -> AckPassSummary:
        own = not isinstance(connector, _Shared)
        opened = connector.connector if isinstance(connector, _Shared) else connector()
        log = self._log if worker is None else _QuietAfterAbandon(self._log, worker.abandoned)
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
        worker: _OrgWorker | None = None,
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
                failure_code=ExportError.CONFIG,
                memory=memory,
            )
            log.error("ack pass for org %s: %s", config.org_id, summary.failure)
            return summary
        try:
            session = connector.session_for(config)
        except Exception as exc:  # noqa: BLE001 - one org's broken config must not stop the rest
            # Without the folder we cannot know whether acks are waiting: no timeouts either.
            code = exc.code if isinstance(exc, ExportError) else ExportError.IO
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

        The deadline runs only when the folder was read and every waiting ack was handled in
        this pass: an ack still in the folder (or one not settled yet) may be the answer to an
        export that looks overdue, and a folder that cannot be read may hold any number.
        """
        log = log or self._log
        started = self._monotonic() if started is None else started
        previous = memory or OrgMemory()
        summary = AckPassSummary(config.org_id)
        next_memory = OrgMemory(problem=previous.problem)
        summary.memory = next_memory
        try:
            entries = session.list_entries(config.ack_path)
        except ExportError as exc:
            summary.failure = f"cannot read the ack folder {config.ack_path}: {exc.message}"
            summary.failure_code = exc.code
            log.error("ack pass for org %s: %s", config.org_id, summary.failure)
            next_memory.skipped, next_memory.unsettled = previous.skipped, previous.unsettled
            return summary
        refused = self._unusable_subfolders(config, entries)
        if refused:
            summary.failure = refused
            summary.failure_code = ExportError.CONFIG
            log.error("ack pass for org %s: %s", config.org_id, refused)
            next_memory.skipped, next_memory.unsettled = previous.skipped, previous.unsettled
            return summary
        candidates = self._candidates(config, entries, previous, next_memory, summary, log)
        batch = candidates[: self._settings.max_files_per_org]
        summary.deferred = len(candidates) - len(batch)
        for index, entry in enumerate(batch):
            if self._over_budget(started, org_deadline):
                summary.deferred += len(batch) - index
                break
            try:
                outcome = self._process_file(config, session, entry, previous, next_memory, log)
            except _Stuck as exc:
                log.error("ack %s of org %s is stuck: %s", _shown(entry.name), config.org_id, exc)
                outcome = AckOutcome(config.org_id, entry.name, "stuck", str(exc))
            except _Stop as exc:
                summary.failure = str(exc)
                summary.failure_code = ExportError.CONNECTION
                summary.deferred += len(batch) - index
                log.warning("ack pass for org %s stopped: %s", config.org_id, exc)
                # Looks not repeated in this pass still count as looks.
                for later in batch[index:]:
                    key = _entry_key(later.name, "look")
                    if key in previous.unsettled:
                        next_memory.unsettled[key] = previous.unsettled[key]
                break
            if outcome is None:
                continue
            summary.outcomes.append(outcome)
            if outcome.kind == "waiting":
                summary.deferred += 1
        if summary.deferred == 0 and summary.failure is None:
            summary.timeouts = self.expire_overdue(config, log=log)
            summary.deadline_checked = True
        return summary

    def _unusable_subfolders(self, config: ConnectorConfig, entries: list[FolderEntry]) -> str:
        for entry in entries:
            if entry.name in (PROCESSED, ERROR) and entry.kind != "dir":
                found = "a symbolic link" if entry.kind == "symlink" else f"a {entry.kind}"
                return (
                    f"{posixpath.join(config.ack_path, entry.name)} is {found}, not a folder; "
                    "refusing to move acks there (it could point outside the ack folder)"
                )
        return ""

    def _candidates(
        self,
        config: ConnectorConfig,
        entries: list[FolderEntry],
        previous: OrgMemory,
        next_memory: OrgMemory,
        summary: AckPassSummary,
        log: Logger,
    ) -> list[FolderEntry]:
        """The acks to handle; every other entry is logged once (while it stays) and left alone."""
        candidates = []
        for entry in entries:
            if entry.kind == "file" and is_ack_name(entry.name):
                candidates.append(entry)
                continue
            if is_quietly_ignored(entry.name):
                continue
            if entry.kind == "dir" and entry.name in (PROCESSED, ERROR):
                continue
            reason = _skip_reason(entry)
            self._skip_once(config, entry.name, reason, previous, next_memory, summary, log)
        return candidates

    def _skip_once(
        self,
        config: ConnectorConfig,
        name: str,
        reason: str,
        previous: OrgMemory,
        next_memory: OrgMemory,
        summary: AckPassSummary,
        log: Logger,
    ) -> None:
        key = _entry_key(name, reason)
        if key not in next_memory.skipped:
            next_memory.skipped.append(key)
        if key in previous.skipped:
            return
        summary.skipped.append((name, reason))
        log.warning(
            "ack folder of org %s: skipping %s: %s (left in place; logged once)",
            config.org_id,
            _shown(name),
            reason,
        )

    def _over_budget(self, started: float, org_deadline: float | None = None) -> bool:
        budget = self._settings.time_budget_seconds
        if budget is None and org_deadline is None:
            return False
        now = self._monotonic()
        return (budget is not None and now - started >= budget) or (
            org_deadline is not None and now >= org_deadline
        )

    # --- one file ------------------------------------------------------------------------------

    def _process_file(
        self,
        config: ConnectorConfig,
        session: DropzoneSession,
        entry: FolderEntry,
        previous: OrgMemory,
        next_memory: OrgMemory,
        log: Logger,
    ) -> AckOutcome | None:
        folder = config.ack_path
        org_id = config.org_id
        name = entry.name
        try:
            data = session.read_file(folder, name, self._settings.max_bytes)
        except NotARegularFile as exc:
            # Swapped for a symlink (or a FIFO) since the listing: never followed, never quoted.
            reason = f"not a regular file any more ({exc.found})"
            self._skip_once(
                config, name, reason, previous, next_memory, AckPassSummary(org_id), log
            )
            return AckOutcome(org_id, name, "skipped", reason)
        except ExportError as exc:
            if not self._still_there(session, folder, name):
                return self._vanished(org_id, name, log)
            if exc.transient:
                raise _Stop(f"reading {_shown(name)}: {exc}") from exc
            # Too large, or unreadable for good: waiting will not help, once it has settled.
            rejection = RejectAck(UNREADABLE, exc.message)
            if not self._settled(entry, previous, next_memory):
                return self._waiting(org_id, name, exc.message, log)
            return self._reject(config, session, name, rejection, log)
        try:
            ack = parse_ack(data, max_bytes=self._settings.max_bytes)
        except AckRejected as exc:
            # A size other than the listing's: someone is writing it right now.
            changed = entry.size is not None and len(data) != entry.size
            if changed or not self._settled(entry, previous, next_memory):
                return self._waiting(org_id, name, exc.reason, log)
            malformed = RejectAck(RejectAck.MALFORMED, exc.reason)
            return self._reject(config, session, name, malformed, log)

        # Two rounds suffice: a missed compare-and-set means the row moved (PENDING -> SENT by
        # the export run, or a terminal status by a concurrent pass); a third read only repeats.
        for _ in range(3):
            record = self._ledger.get(ack.export_id)
            decision = decide(record, ack, org_id)
            own = record if record is not None and record.org_id == org_id else None
            if isinstance(decision, RejectAck):
                return self._reject(config, session, name, decision, log, ack=ack, record=own)
            if isinstance(decision, AlreadyApplied):
                moved = self._move(session, folder, name, PROCESSED)
                log.info("ack %s of org %s: %s (replay)", _shown(name), org_id, decision.reason)
                assert own is not None
                return self._outcome(
                    "replayed" if moved else "vanished",
                    org_id,
                    name,
                    decision.reason,
                    ack,
                    own,
                    moved_to=moved,
                )
            if self._apply(decision):
                moved = self._move(session, folder, name, PROCESSED)
                log.info("ack %s of org %s: %s", _shown(name), org_id, decision.reason)
                assert own is not None
                return self._outcome(
                    "applied",
                    org_id,
                    name,
                    decision.reason,
                    ack,
                    own,
                    moved_to=moved,
                    status=decision.new_status,
                    error_code=decision.error_code,
                    error_message=decision.error_message,
                )
        log.warning(
            "ack %s of org %s: export %s kept changing; left for the next pass",
            _shown(name),
            org_id,
            ack.export_id,
        )
        return None

    def _settled(self, entry: FolderEntry, previous: OrgMemory, next_memory: OrgMemory) -> bool:
        key = _entry_key(entry.name, "look")
        look = (entry.size, entry.mtime)
        settled = is_settled(
            entry.size,
            entry.mtime,
            now=self._clock().timestamp(),
            settle_seconds=self._settings.settle_seconds,
            previous_look=previous.unsettled.get(key),
        )
        if not settled:
            next_memory.unsettled[key] = look
        return settled

    def _waiting(self, org_id: str, name: str, reason: str, log: Logger) -> AckOutcome:
        why = excerpt(reason, MAX_REASON_CHARS)
        log.info(
            "ack %s of org %s does not parse yet (%s); judged once it has settled",
            _shown(name),
            org_id,
            why,
        )
        return AckOutcome(org_id, name, "waiting", f"not settled yet: {why}")

    def _apply(self, decision: ApplyAck) -> bool:
        at = self._clock()
        if decision.new_status is ExportStatus.ACKED:
            return self._ledger.mark_acked(
                decision.export_id,
                expected=decision.expected,
                erp_order_number=decision.erp_order_number,
                at=at,
            )
        assert decision.error_code is not None and decision.error_message is not None
        return self._ledger.mark_failed(
            decision.export_id,
            expected=decision.expected,
            code=decision.error_code,
            message=decision.error_message,
            at=at,
        )

    def _reject(
        self,
        config: ConnectorConfig,
        session: DropzoneSession,
        name: str,
        decision: RejectAck,
        log: Logger,
        *,
        ack: Ack | None = None,
        record: ExportRecord | None = None,
    ) -> AckOutcome:
        folder = config.ack_path
        moved = self._move(session, folder, name, ERROR)
        reason = excerpt(decision.reason, MAX_REASON_CHARS)
        # A conflict may mean an order the ERP holds while we think it failed: shout. A file
        # that is not an ack at all needs a person too.
        report = log.warning if decision.code in (RejectAck.UNKNOWN_EXPORT,) else log.error
        report(
            "ack %s of org %s rejected (%s): %s%s",
            _shown(name),
            config.org_id,
            decision.code,
            reason,
            f" [{decision.log_detail}]" if decision.log_detail else "",
        )
        if moved is None:
            return self._vanished(config.org_id, name, log)
        note = (
            f"file: {_shown(name)}\n"
            f"org: {config.org_id}\n"
            f"rejected at: {self._clock().strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
            f"code: {decision.code}\n"
            f"reason: {reason}\n"
        )
        note_name = posixpath.basename(moved) + ERROR_NOTE_SUFFIX
        try:
            session.write_file(
                posixpath.join(folder, ERROR), note_name, safe_text(note).encode("utf-8")
            )
        except (ExportError, OSError) as exc:
            # The file is already parked and the reason is in the log; do not fail the pass.
            log.warning("could not write %s beside %s: %s", _shown(note_name), moved, exc)
        return self._outcome(
            "rejected",
            config.org_id,
            name,
            reason,
            ack,
            record,
            moved_to=moved,
            reject_code=decision.code,
            export_id=decision.export_id,
        )

    def _move(self, session: DropzoneSession, folder: str, name: str, sub: str) -> str | None:
        """Move ``name`` into ``sub``; None when it is already gone (moved by another pass)."""
        try:
            return session.move_file(folder, name, sub)
        except (ExportError, OSError) as exc:
            if not self._still_there(session, folder, name):
                return None
            if isinstance(exc, ExportError) and not exc.transient:
                # The row change (if any) is done; only the file stays behind, reported.
                raise _Stuck(f"cannot move {_shown(name)} to {sub}/: {exc}") from exc
            # The row change (if any) is done; the next pass replays it and moves the file.
            raise _Stop(f"moving {_shown(name)} to {sub}/: {exc}") from exc

    @staticmethod
    def _still_there(session: DropzoneSession, folder: str, name: str) -> bool:
        try:
            return session.exists(folder, name)
        except (ExportError, OSError) as exc:
            raise _Stop(f"checking {_shown(name)}: {exc}") from exc

    def _vanished(self, org_id: str, name: str, log: Logger) -> AckOutcome:
        log.info("ack %s of org %s was already moved by another pass", _shown(name), org_id)
        return AckOutcome(org_id, name, "vanished", "already moved by another pass")

    @staticmethod
    def _outcome(
        kind: OutcomeKind,
        org_id: str,
        name: str,
        reason: str,
        ack: Ack | None,
        record: ExportRecord | None,
        *,
        moved_to: str | None,
        status: ExportStatus | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        reject_code: str | None = None,
        export_id: str | None = None,
    ) -> AckOutcome:
        return AckOutcome(
            org_id=org_id,
            file_name=name,
            kind=kind,
            reason=reason,
            export_id=export_id or (ack.export_id if ack is not None else None),
            draft_order_id=record.draft_order_id if record is not None else None,
            status=status or (record.status if record is not None else None),
            erp_order_number=(
                ack.erp_order_number if ack is not None and ack.status == "ACKED" else None
            ),
            error_code=error_code or (record.error_code if record is not None else None),
            error_message=error_message or (record.error_message if record is not None else None),
            received_at=ack.received_at if ack is not None else None,
            reject_code=reject_code,
            moved_to=moved_to,
        )

    # --- the ack deadline ----------------------------------------------------------------------

    def expire_overdue(
        self, config: ConnectorConfig, log: Logger | None = None
    ) -> list[AckTimeout]:
        """SENT exports of the org older than its ack deadline become FAILED (ACK_TIMEOUT)."""
        log = log or self._log
        now = self._clock()
        cutoff = ack_deadline_cutoff(now, config.ack_deadline_seconds)
        expired = []
        overdue = self._ledger.sent_before(
            config.org_id, cutoff, self._settings.max_timeouts_per_org
        )
        for record in overdue:
            message = ack_timeout_message(record, config.ack_deadline_seconds)
            # Compare-and-set on SENT: an ack applied meanwhile wins and this changes nothing.
            if self._ledger.mark_failed(
                record.id, expected=ExportStatus.SENT, code=ACK_TIMEOUT, message=message, at=now
            ):
                log.warning("export %s of %s: %s", record.id, record.ref.partition_key, message)
                expired.append(
                    AckTimeout(
                        config.org_id, record.id, record.draft_order_id, record.sent_at, message
                    )
                )
        return expired


def _shown(name: str) -> str:
    """A file name as logs and notes show it: escaped and bounded (names are the ERP's)."""
    return excerpt(name, 120)


def _skip_reason(entry: FolderEntry) -> str:
    if entry.kind == "file":
        return "not named *.json"
    return {
        "dir": "a folder",
        "symlink": "a symbolic link (never followed)",
        "fifo": "a FIFO",
    }.get(entry.kind, "a socket or device")
