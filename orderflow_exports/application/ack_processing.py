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
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from orderflow_exports.domain.acks import (
    ACK_TIMEOUT,
    DEFAULT_MAX_ACK_BYTES,
    Ack,
    AckRejected,
    AlreadyApplied,
    ApplyAck,
    RejectAck,
    ack_deadline_cutoff,
    ack_timeout_message,
    decide,
    parse_ack,
    safe_text,
)
from orderflow_exports.domain.errors import ExportError
from orderflow_exports.domain.naming import FILE_SUFFIX, TEMP_PREFIX, TEMP_SUFFIX
from orderflow_exports.domain.ports import DropzoneConnector, DropzoneSession, ExportLedger
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus

PROCESSED = "processed"
ERROR = "error"
ERROR_NOTE_SUFFIX = ".error.txt"
UNREADABLE = "UNREADABLE"

# vanished: moved by a concurrent pass; stuck: cannot be moved for good (permissions).
OutcomeKind = Literal["applied", "replayed", "rejected", "vanished", "stuck"]

_log = logging.getLogger(__name__)


class Logger(Protocol):
    """The part of a logger used here (``logging.Logger`` and Dagster's ``context.log``)."""

    def info(self, msg: str, *args: object) -> None: ...

    def warning(self, msg: str, *args: object) -> None: ...

    def error(self, msg: str, *args: object) -> None: ...


def is_ack_candidate(name: str) -> bool:
    """A name the ERP may have written as an ack: ``*.json``, not a dot-file, not ``*.tmp``."""
    return (
        not name.startswith(TEMP_PREFIX)
        and not name.endswith(TEMP_SUFFIX)
        and name.endswith(FILE_SUFFIX)
        and len(name) > len(FILE_SUFFIX)
    )


@dataclass(frozen=True)
class AckSettings:
    """Bounds of one pass; the defaults keep a sensor tick far inside its 60 s timeout."""

    max_files_per_org: int = 100
    max_bytes: int = DEFAULT_MAX_ACK_BYTES
    max_timeouts_per_org: int = 500
    # Stop starting new files once a pass has run this long; the rest waits for the next pass.
    time_budget_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_files_per_org < 1 or self.max_timeouts_per_org < 1 or self.max_bytes < 1:
            raise ValueError("ack pass limits must be positive")


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
    deferred: int = 0  # candidate files left for the next pass (bounds)
    failure: str | None = None  # why the pass stopped early (transient: the next pass retries)
    deadline_checked: bool = False
    not_reached: bool = False  # the pass's time budget ran out before this org's turn

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
    def did_anything(self) -> bool:
        return bool(self.outcomes or self.timeouts or self.failure)

    def describe(self) -> str:
        parts = [
            f"org {self.org_id}: {len(self.applied)} applied",
            f"{len(self.replayed)} replayed",
            f"{len(self.rejected)} rejected",
            f"{len(self.timeouts)} timed out",
        ]
        if self.stuck:
            parts.append(f"{len(self.stuck)} stuck")
        if self.deferred:
            parts.append(f"{self.deferred} left for the next pass")
        if self.failure:
            parts.append(f"stopped early: {self.failure}")
        if self.not_reached:
            return f"org {self.org_id}: not reached, time budget used up; next pass"
        return ", ".join(parts)


class _Stop(Exception):
    """The session broke mid-pass; the remaining files wait for the next pass."""


class _Stuck(Exception):
    """This one file cannot be moved for good; the pass goes on with the next file."""


class AckProcessor:
    """Applies ack files to ``erp_export`` and expires overdue SENT exports, one org at a time.

    ``clock`` gives the time stored in rows (``acked_at``, ``updated_at``); ``monotonic`` only
    measures the pass against ``time_budget_seconds``.
    """

    def __init__(
        self,
        ledger: ExportLedger,
        settings: AckSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        log: Logger | None = None,
    ) -> None:
        self._ledger = ledger
        self._settings = settings or AckSettings()
        self._clock = clock
        self._monotonic = monotonic
        self._log = log or _log

    # --- whole passes --------------------------------------------------------------------------

    def process_all(
        self, configs: Iterable[ConnectorConfig], connector: DropzoneConnector
    ) -> list[AckPassSummary]:
        """One pass over every enabled org; an org's failure never stops the others."""
        started = self._monotonic()
        summaries = []
        for config in configs:
            if not config.enabled:
                continue
            if self._over_budget(started):
                # Opening a session can take seconds; later orgs wait for the next pass.
                summaries.append(AckPassSummary(config.org_id, not_reached=True))
                continue
            summaries.append(self.process_org(config, connector, started=started))
        return summaries

    def process_org(
        self,
        config: ConnectorConfig,
        connector: DropzoneConnector,
        *,
        started: float | None = None,
    ) -> AckPassSummary:
        """Open the org's dropzone session, process its ack folder, then its deadline."""
        try:
            session = connector.session_for(config)
        except Exception as exc:  # noqa: BLE001 - one org's broken config must not stop the rest
            # Without the folder we cannot know whether acks are waiting: no timeouts either.
            summary = AckPassSummary(config.org_id, failure=f"cannot open dropzone: {exc}")
            self._log.warning("ack pass for org %s: %s", config.org_id, summary.failure)
            return summary
        summary = self.process_folder(config, session, started=started)
        if summary.failure is not None:
            connector.discard(config)  # the next pass reconnects
        return summary

    def process_folder(
        self, config: ConnectorConfig, session: DropzoneSession, *, started: float | None = None
    ) -> AckPassSummary:
        """Apply the acks waiting in ``config.ack_path``, then expire overdue exports.

        The deadline runs only when every waiting ack was handled in this pass: an ack still
        in the folder may be the answer to an export that looks overdue.
        """
        started = self._monotonic() if started is None else started
        summary = AckPassSummary(config.org_id)
        try:
            names = [n for n in session.list_files(config.ack_path) if is_ack_candidate(n)]
        except ExportError as exc:
            summary.failure = f"cannot list {config.ack_path}: {exc}"
            self._log.warning("ack pass for org %s: %s", config.org_id, summary.failure)
            return summary
        batch = names[: self._settings.max_files_per_org]
        summary.deferred = len(names) - len(batch)
        for index, name in enumerate(batch):
            if self._over_budget(started):
                summary.deferred += len(batch) - index
                break
            try:
                outcome = self._process_file(config, session, name)
            except _Stuck as exc:
                self._log.error("ack %s of org %s is stuck: %s", name, config.org_id, exc)
                outcome = AckOutcome(config.org_id, name, "stuck", str(exc))
            except _Stop as exc:
                summary.failure = str(exc)
                summary.deferred += len(batch) - index
                self._log.warning("ack pass for org %s stopped: %s", config.org_id, exc)
                break
            if outcome is not None:
                summary.outcomes.append(outcome)
        if summary.deferred == 0 and summary.failure is None:
            summary.timeouts = self.expire_overdue(config)
            summary.deadline_checked = True
        return summary

    def _over_budget(self, started: float) -> bool:
        budget = self._settings.time_budget_seconds
        return budget is not None and self._monotonic() - started >= budget

    # --- one file ------------------------------------------------------------------------------

    def _process_file(
        self, config: ConnectorConfig, session: DropzoneSession, name: str
    ) -> AckOutcome | None:
        folder = config.ack_path
        org_id = config.org_id
        try:
            data = session.read_file(folder, name, self._settings.max_bytes)
        except ExportError as exc:
            if not self._still_there(session, folder, name):
                return self._vanished(org_id, name)
            if exc.transient:
                raise _Stop(f"reading {name}: {exc}") from exc
            # Too large, or unreadable for good: waiting will not help.
            return self._reject(config, session, name, RejectAck(UNREADABLE, exc.message))
        try:
            ack = parse_ack(data, max_bytes=self._settings.max_bytes)
        except AckRejected as exc:
            return self._reject(config, session, name, RejectAck(RejectAck.MALFORMED, exc.reason))

        # Two rounds suffice: a missed compare-and-set means the row moved (PENDING -> SENT by
        # the export run, or a terminal status by a concurrent pass); a third read only repeats.
        for _ in range(3):
            record = self._ledger.get(ack.export_id)
            decision = decide(record, ack, org_id)
            own = record if record is not None and record.org_id == org_id else None
            if isinstance(decision, RejectAck):
                return self._reject(config, session, name, decision, ack=ack, record=own)
            if isinstance(decision, AlreadyApplied):
                moved = self._move(session, folder, name, PROCESSED)
                self._log.info("ack %s of org %s: %s (replay)", name, org_id, decision.reason)
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
                self._log.info("ack %s of org %s: %s", name, org_id, decision.reason)
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
        self._log.warning(
            "ack %s of org %s: export %s kept changing; left for the next pass",
            name,
            org_id,
            ack.export_id,
        )
        return None

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
        *,
        ack: Ack | None = None,
        record: ExportRecord | None = None,
    ) -> AckOutcome:
        folder = config.ack_path
        moved = self._move(session, folder, name, ERROR)
        # A conflict may mean an order the ERP holds while we think it failed: shout.
        report = self._log.error if decision.code == RejectAck.CONFLICT else self._log.warning
        report(
            "ack %s of org %s rejected (%s): %s%s",
            name,
            config.org_id,
            decision.code,
            decision.reason,
            f" [{decision.log_detail}]" if decision.log_detail else "",
        )
        if moved is None:
            return self._vanished(config.org_id, name)
        note = (
            f"file: {name}\n"
            f"org: {config.org_id}\n"
            f"rejected at: {self._clock().strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
            f"reason: {decision.reason}\n"
        )
        note_name = posixpath.basename(moved) + ERROR_NOTE_SUFFIX
        try:
            session.write_file(
                posixpath.join(folder, ERROR), note_name, safe_text(note).encode("utf-8")
            )
        except (ExportError, OSError) as exc:
            # The file is already parked and the reason is in the log; do not fail the pass.
            self._log.warning("could not write %s beside %s: %s", note_name, moved, exc)
        return self._outcome(
            "rejected",
            config.org_id,
            name,
            decision.reason,
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
                raise _Stuck(f"cannot move {name} to {sub}/: {exc}") from exc
            # The row change (if any) is done; the next pass replays it and moves the file.
            raise _Stop(f"moving {name} to {sub}/: {exc}") from exc

    @staticmethod
    def _still_there(session: DropzoneSession, folder: str, name: str) -> bool:
        try:
            return session.exists(folder, name)
        except (ExportError, OSError) as exc:
            raise _Stop(f"checking {name}: {exc}") from exc

    def _vanished(self, org_id: str, name: str) -> AckOutcome:
        self._log.info("ack %s of org %s was already moved by another pass", name, org_id)
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

    def expire_overdue(self, config: ConnectorConfig) -> list[AckTimeout]:
        """SENT exports of the org older than its ack deadline become FAILED (ACK_TIMEOUT)."""
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
                self._log.warning(
                    "export %s of %s: %s", record.id, record.ref.partition_key, message
                )
                expired.append(
                    AckTimeout(
                        config.org_id, record.id, record.draft_order_id, record.sent_at, message
                    )
                )
        return expired
