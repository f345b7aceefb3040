"""Publishing one export and settling an unfinished publish, so that no second copy can arise.

The half of the export use case that talks to the dropzone once a PENDING row exists (PENDING
→ SENT or FAILED): the spool file is published under the row's final name only by the holder
of the rename right (``mark_renaming``); an error after the rename was issued, or a PENDING row
left by a run that is no longer active, is decided by one settle rule
(:meth:`Publisher.settle_unpublished`), shared with the reconciler. Logins that failed in the run
are remembered here, so that their other drafts fail fast without a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from orderflow_exports.domain.endpoints import login_key
from orderflow_exports.domain.errors import ClaimLost, ErrorCode, ExportError, NotAttempted
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import (
    DropzoneConnector,
    DropzoneSession,
    ExportLedger,
    Logger,
)
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus

# How an unfinished publish was settled (see Publisher.settle_unpublished).
SettleVerdict = Literal["landed", "unconfirmed", "failed", "moved_on"]
CONNECTION_CODES = (ErrorCode.CONNECTION, ErrorCode.TIMEOUT)
ENDPOINT_DOWN_CODES = (
    ErrorCode.CONNECTION,
    ErrorCode.TIMEOUT,
    ErrorCode.HOST_KEY,
    ErrorCode.AUTH,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ExportSettings:
    """Tunables of the export use case."""

    spool_dir: Path
    stale_temp_age: timedelta = timedelta(hours=1)
    line_chunk_size: int = 1000


@dataclass
class Publisher:
    """Publishes spool files of PENDING rows and settles unfinished publishes; one per run.

    Per run it remembers the folders it has swept and the logins that failed.
    """

    ledger: ExportLedger
    dropzones: DropzoneConnector
    settings: ExportSettings
    log: Logger = field(default_factory=lambda: logging.getLogger("orderflow_exports"))
    clock: Callable[[], datetime] = utc_now
    _swept: set[tuple[str, str]] = field(default_factory=set)
    # Logins (server and credentials) that failed in this run, with the org that met the
    # failure: their other drafts fail fast, without a new row. Keyed by the credentials too, so
    # that one org's wrong key never stops another org on the same server and user name.
    _down: dict[str, tuple[str, ExportError]] = field(default_factory=dict)

    def login_failed(self, config: ConnectorConfig) -> bool:
        """Whether the login of ``config`` already failed in this run."""
        return login_key(config) in self._down

    def publish(self, record: ExportRecord, config: ConnectorConfig, spool: Path) -> ExportRecord:
        """Publish the spool file and mark the row SENT; returns the row as it now is."""
        renaming: list[datetime] = []

        def before_rename() -> None:
            at = self.clock()
            if not self.ledger.mark_renaming(record.id, at=at):
                # Another run reconciled the row while this one stalled: the adapter removes
                # the temp file and renames nothing.
                raise self._claim_lost(record, "its claim on the final rename was refused")
            renaming.append(at.astimezone(UTC))

        try:
            session = self.session_for(config)
            self._sweep_once(session, config)
            session.publish(
                config.export_path, record.filename, spool, record.byte_size, before_rename
            )
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, ExportError)
                else ExportError(ErrorCode.IO, f"{type(exc).__name__}: {exc}", transient=True)
            )
            if isinstance(error, ClaimLost):
                spool.unlink(missing_ok=True)  # the row is not ours: it will never be archived
                raise
            if error.code in CONNECTION_CODES:
                self.dropzones.discard(config)
            if renaming:
                # The rename was issued: the file may be in the dropzone whatever the error said.
                settled = self._settle_after_rename(record, config, error)
                if settled is not None:
                    return settled
            else:
                if not self._fail(record, error):
                    spool.unlink(missing_ok=True)
                    why = f"its publish failed meanwhile ({error})"
                    raise self._claim_lost(record, why) from exc
                spool.unlink(missing_ok=True)  # a FAILED attempt is never archived
                if error.code in ENDPOINT_DOWN_CODES and config.transport == "sftp":
                    self.mark_down(config, error)
            if error is exc:
                raise
            raise error from exc
        return self._record_sent(replace(record, rename_started_at=renaming[-1]))

    def _settle_after_rename(
        self, record: ExportRecord, config: ConnectorConfig, error: ExportError
    ) -> ExportRecord | None:
        """After a failure once the rename was issued: the same decision as the reconciler's.

        Returns the SENT row when the file landed (or may have: the ERP may have taken it).
        Returns None whenever the caller should raise ``error``: the temp file was still there
        and is removed now (the row is FAILED with ``error``, a new attempt is safe), or the
        dropzone cannot even be asked (the row stays PENDING with its spool file and the next
        try reconciles it). Raises ClaimLost when another run settled the row first as FAILED.
        """
        try:
            session = self.session_for(config)
            settled, verdict = self.settle_unpublished(
                record,
                session,
                config.export_path,
                code=error.code,
                message=f"{error.message} ({error.kind})",
                transient=error.transient,
            )
        except ExportError as check_error:
            self.log.warning(
                f"{record.ref}: export {record.id} failed after its rename was issued ({error}) "
                f"and the dropzone cannot be checked ({check_error}); the row stays PENDING and "
                "the next try checks the dropzone before sending anything"
            )
            return None
        if verdict == "landed":
            self.log.warning(
                f"{record.ref}: export {record.id} reported {error.code} after its rename, but "
                "the file is in the dropzone: recorded as SENT"
            )
            return settled
        if verdict == "unconfirmed":
            self.log.warning(
                f"{record.ref}: export {record.id} reported {error.code} after its rename and "
                "neither its file nor its temp file is in the dropzone (the ERP may have taken "
                "it): recorded as SENT, unconfirmed; the ERP's ack or the ack deadline settles "
                "it, never a second copy"
            )
            return settled
        if verdict == "moved_on" and settled.status is not ExportStatus.FAILED:
            return settled  # another run (or an ack) already recorded it as delivered
        self.spool_path(record.ref, record.id).unlink(missing_ok=True)
        if verdict == "moved_on":
            raise self._claim_lost(record, f"its rename failed meanwhile ({error})")
        return None

    def _record_sent(self, record: ExportRecord) -> ExportRecord:
        at = self.clock()
        if self.ledger.mark_sent(record.id, at=at):
            # The compare-and-set changed exactly these columns of the row we hold: no need to
            # read it back (one query less per export). Timestamps are stored as UTC.
            utc = at.astimezone(UTC)
            return replace(record, status=ExportStatus.SENT, sent_at=utc, updated_at=utc)
        # Someone else moved the row on first (an ack may arrive before SENT): read what it is.
        refreshed = self.ledger.get(record.id)
        assert refreshed is not None
        return refreshed

    def settle_unpublished(
        self,
        record: ExportRecord,
        session: DropzoneSession,
        folder: str,
        *,
        code: str,
        message: str,
        transient: bool | None = None,
    ) -> tuple[ExportRecord, SettleVerdict]:
        """Decide a PENDING row whose publish did not finish, so that no second copy can arise.

        Used by the reconciler (the owning run is dead, or stalled and able to go on any time)
        and by the owner itself after an error once its rename was issued:

        - the final file is there → SENT (``landed``);
        - the rename right was never taken → take it here (``mark_renaming``): the owner's own
          claim is refused from then on, so it can never rename → FAILED (``failed``);
        - the rename was issued and its temp file is still there → remove it; once removed no
          rename of it can succeed any more → FAILED (``failed``);
        - the rename was issued and no temp file is left → the rename happened (or the temp was
          taken by someone else): final file there → SENT (``landed``), else the ERP may have
          taken it → SENT, unconfirmed (``unconfirmed``): its ack or its deadline settles it;
        - a compare-and-set lost: someone else moved the row first (``moved_on``).

        Raises ExportError when the dropzone cannot be asked; the row then stays PENDING.
        """
        for _ in range(3):  # a refused claim means the row changed; it changes at most twice
            if session.exists(folder, record.filename):
                return self._settle_as_sent(record, "landed")
            current = self.ledger.get(record.id)
            assert current is not None
            if current.status is not ExportStatus.PENDING:
                return current, "moved_on"
            if current.rename_started_at is None:
                if not self.ledger.mark_renaming(record.id, at=self.clock()):
                    continue  # the owner took the right meanwhile: decide again
                failed = self._settle_as_failed(current, code, message, transient)
                # Only tidiness from here: the row can no longer be renamed by anyone, and a
                # temp file left behind is swept as stale later.
                try:
                    session.remove_temp(folder, record.filename)
                except ExportError as exc:
                    self.log.warning(f"{record.ref}: temp file of {record.id} left: {exc}")
                return failed
            if session.remove_temp(folder, record.filename):
                return self._settle_as_failed(current, code, message, transient)
            if session.exists(folder, record.filename):
                return self._settle_as_sent(record, "landed")
            return self._settle_as_sent(record, "unconfirmed")
        current = self.ledger.get(record.id)
        assert current is not None
        return current, "moved_on"

    def _settle_as_sent(
        self, record: ExportRecord, verdict: SettleVerdict
    ) -> tuple[ExportRecord, SettleVerdict]:
        moved = not self.ledger.mark_sent(record.id, at=self.clock())
        refreshed = self.ledger.get(record.id)
        assert refreshed is not None
        return refreshed, "moved_on" if moved else verdict

    def _settle_as_failed(
        self, record: ExportRecord, code: str, message: str, transient: bool | None
    ) -> tuple[ExportRecord, SettleVerdict]:
        moved = not self.ledger.mark_failed(
            record.id,
            expected=ExportStatus.PENDING,
            code=code,
            message=message,
            at=self.clock(),
            transient=transient,
        )
        refreshed = self.ledger.get(record.id)
        assert refreshed is not None
        return refreshed, "moved_on" if moved else "failed"

    def _claim_lost(self, record: ExportRecord, why: str) -> ClaimLost:
        """The error of a run whose row another run (or an ack) settled while it was away."""
        current = self.ledger.get(record.id)
        state = "gone" if current is None else f"now {current.status}"
        if current is not None and current.error_code:
            state += f" ({current.error_code}: {current.error_message})"
        return ClaimLost(
            f"{record.ref}: this run lost its claim: export {record.id} (attempt "
            f"{record.attempt}) is {state}; {why}; this run renames nothing more and leaves "
            "the row as it is"
        )

    def session_for(self, config: ConnectorConfig) -> DropzoneSession:
        down = self._down.get(login_key(config))
        if down is not None:
            failed_org, error = down
            # Orgs may share a login; what the failure said (paths, key references) is shown to
            # the org that met it only.
            detail = f": {error.message}" if failed_org == config.org_id else ""
            raise NotAttempted(
                error.code,
                f"not attempted: the login to {config.endpoint} already failed in this run "
                f"with {error.code} ({error.kind}){detail}",
                transient=error.transient,
            )
        return self.dropzones.session_for(config)

    def mark_down(self, config: ConnectorConfig, error: ExportError) -> None:
        self._down.setdefault(login_key(config), (config.org_id, error))

    def _fail(self, record: ExportRecord, error: ExportError) -> bool:
        return self.ledger.mark_failed(
            record.id,
            expected=ExportStatus.PENDING,
            code=error.code,
            message=f"{error.message} ({error.kind})",
            at=self.clock(),
            transient=error.transient,
        )

    def _sweep_once(self, session: DropzoneSession, config: ConnectorConfig) -> None:
        key = (config.endpoint, config.export_path)
        if key in self._swept:
            return
        self._swept.add(key)
        removed = session.sweep_stale_temps(
            config.export_path, self.settings.stale_temp_age, keep=self._holds_a_claimed_rename
        )
        for name in removed:
            self.log.warning(
                f"removed stale temp file {name} from {config.export_path} "
                f"(older than {self.settings.stale_temp_age})"
            )

    def _holds_a_claimed_rename(self, final_name: str) -> bool:
        """Whether a stale temp file stands for a PENDING row whose rename right was taken.

        Its presence is what settles that row (temp there → FAILED, retried; gone → SENT,
        unconfirmed), so the sweep must leave it to the settle rule.
        """
        stem, _, export_id = final_name.removesuffix(".json").rpartition("_")
        if not stem or not export_id:
            return False
        record = self.ledger.get(export_id)
        return (
            record is not None
            and record.filename == final_name
            and record.status is ExportStatus.PENDING
            and record.rename_started_at is not None
        )

    def spool_path(self, ref: DraftRef, export_id: str) -> Path:
        return self.settings.spool_dir / ref.org_id / ref.draft_order_id / f"{export_id}.json"
