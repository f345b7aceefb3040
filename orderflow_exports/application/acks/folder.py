"""One org's ack folder: read each ack, apply it to its export, move it to processed/ or error/.

Every step is safe to repeat, because a failed or timed-out sensor tick does not save its cursor
and the next tick sees the same files:

1. read and parse the file; decide against the row (``domain.ack_decisions.decide``);
2. apply the decision as a compare-and-set on the expected old status;
3. move the file to ``processed/`` (or ``error/`` with ``<name>.error.txt`` beside it).

A crash between 2 and 3 leaves the file in place; the next pass finds the row already changed,
which is a replay, and moves the file. A file that is gone when we get to it was moved by a
concurrent pass (the sensor and the job may overlap) and counts as done.

The ack folder belongs to the ERP (and to whoever else can write on its server), so it is read
defensively: only regular files are opened (never through a symlink, never blocking on a FIFO),
``processed/`` and ``error/`` must be real folders, an ack that does not parse is refused only
once it has settled (it may still be being written), and a note or a log line quotes at most a
short escaped excerpt of anything the ERP wrote.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from datetime import datetime

from orderflow_exports.application.acks.deadline import expire_overdue
from orderflow_exports.application.acks.memory import OrgMemory, entry_key
from orderflow_exports.application.acks.results import (
    AckOutcome,
    AckPassSummary,
    OutcomeKind,
)
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.domain.ack_decisions import AlreadyApplied, ApplyAck, RejectAck, decide
from orderflow_exports.domain.ack_files import (
    Ack,
    AckRejected,
    excerpt,
    is_ack_name,
    is_quietly_ignored,
    is_settled,
    parse_ack,
    safe_text,
)
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.ports import (
    DropzoneSession,
    ExportLedger,
    FolderEntry,
    Logger,
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


def is_ack_candidate(name: str) -> bool:
    """A name the ERP may have written as an ack (see ``domain.ack_files.is_ack_name``)."""
    return is_ack_name(name)


class _Stop(Exception):
    """The session broke mid-pass; the remaining files wait for the next pass."""


class _Stuck(Exception):
    """This one file cannot be moved for good; the pass goes on with the next file."""


class AckFolderPass:
    """Processes one org's ack folder over an open session, then applies the org's ack deadline.

    ``clock`` gives the time stored in rows (``acked_at``, ``updated_at``) and the "now" ack
    files are settled against; ``monotonic`` only measures the pass against its budgets.
    """

    def __init__(
        self,
        ledger: ExportLedger,
        settings: AckSettings,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        log: Logger,
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._log = log

    def over_budget(self, started: float, org_deadline: float | None = None) -> bool:
        """Whether the pass (or this org, by ``org_deadline``) has used up its time."""
        budget = self._settings.time_budget_seconds
        if budget is None and org_deadline is None:
            return False
        now = self._monotonic()
        return (budget is not None and now - started >= budget) or (
            org_deadline is not None and now >= org_deadline
        )

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
            summary.failure_code = ErrorCode.CONFIG
            log.error("ack pass for org %s: %s", config.org_id, refused)
            next_memory.skipped, next_memory.unsettled = previous.skipped, previous.unsettled
            return summary
        candidates = self._candidates(config, entries, previous, next_memory, summary, log)
        batch = candidates[: self._settings.max_files_per_org]
        summary.deferred = len(candidates) - len(batch)
        for index, entry in enumerate(batch):
            if self.over_budget(started, org_deadline):
                summary.deferred += len(batch) - index
                break
            try:
                outcome = self._process_file(config, session, entry, previous, next_memory, log)
            except _Stuck as exc:
                log.error("ack %s of org %s is stuck: %s", _shown(entry.name), config.org_id, exc)
                outcome = AckOutcome(config.org_id, entry.name, "stuck", str(exc))
            except _Stop as exc:
                summary.failure = str(exc)
                summary.failure_code = ErrorCode.CONNECTION
                summary.deferred += len(batch) - index
                log.warning("ack pass for org %s stopped: %s", config.org_id, exc)
                # Looks not repeated in this pass still count as looks.
                for later in batch[index:]:
                    key = entry_key(later.name, "look")
                    if key in previous.unsettled:
                        next_memory.unsettled[key] = previous.unsettled[key]
                break
            if outcome is None:
                continue
            summary.outcomes.append(outcome)
            if outcome.kind == "waiting":
                summary.deferred += 1
        if summary.deferred == 0 and summary.failure is None:
            summary.timeouts = expire_overdue(
                self._ledger,
                config,
                now=self._clock(),
                limit=self._settings.max_timeouts_per_org,
                log=log,
            )
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
        key = entry_key(name, reason)
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

        # Two reads suffice: the compare-and-set expects PENDING or SENT, so it misses only when
        # a concurrent pass (or the deadline) has just made the row terminal, and against a
        # terminal row the decision is a replay or a rejection, which sets nothing.
        for _ in range(2):
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
        key = entry_key(entry.name, "look")
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
