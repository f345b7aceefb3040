"""The export use case: one approved draft → one file in its org's dropzone and a ledger row.

Plain Python over the ports; the Dagster assets only wire it. The rules (CONTRACT §2, §6):

- a draft whose latest export is SENT or ACKED is not sent again unless ``force`` is asked;
- only the holder of the rename right (``mark_renaming``, taken once per row) may give a file its
  final name; a run whose claim is refused never renames and fails with "lost its claim";
- a PENDING export of a run that is no longer active (dead, or stalled and able to go on) is
  settled first by :meth:`ExportService._settle_unpublished`: its final file there → SENT; else
  the rename right is taken from it, or its temp file removed, before it may become FAILED
  (``INTERRUPTED``) and a new attempt is made; rename issued and no file left (the ERP may have
  taken it) → SENT, unconfirmed, so that the ack or the ack deadline decides, never a second copy;
- an error after the rename was issued is settled by the same rule; when the dropzone cannot be
  asked, the row stays PENDING for the next try;
- every new attempt is a new row (attempt + 1, new export id and file name), made only once the
  dropzone session is open: a server that refuses the connection costs no row (a permanent
  refusal, host key or auth, still gets its FAILED row);
- once a login (server and credentials) fails in a run, that login's other drafts fail at once
  as "not attempted", without a row and without the details of the org that met the failure;
- the document is streamed to a spool file first, so the row carries its sha256 and size and a
  huge draft never sits in memory; the same file is then published and archived.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import posixpath
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from orderflow_exports.domain.connector_rules import LocalFolders, connector_problems
from orderflow_exports.domain.document import build_header, write_document
from orderflow_exports.domain.drafts import DraftOrder, ensure_exportable
from orderflow_exports.domain.errors import (
    AlreadyInFlight,
    ClaimLost,
    ConnectorNotConfigured,
    ExportError,
    NotAttempted,
)
from orderflow_exports.domain.naming import DraftRef, export_filename
from orderflow_exports.domain.ports import (
    ConnectorConfigs,
    DraftSource,
    DropzoneConnector,
    DropzoneSession,
    ExportLedger,
    ExportStore,
    Logger,
    RunLiveness,
)
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus

OutcomeAction = Literal["sent", "already_sent", "recovered"]
# How an unfinished publish was settled (see ExportService._settle_unpublished).
SettleVerdict = Literal["landed", "unconfirmed", "failed", "moved_on"]
_CONNECTION_CODES = (ExportError.CONNECTION, ExportError.TIMEOUT)
_ENDPOINT_DOWN_CODES = (
    ExportError.CONNECTION,
    ExportError.TIMEOUT,
    ExportError.HOST_KEY,
    ExportError.AUTH,
)
PERMANENT = "permanent"


def _login_key(config: ConnectorConfig) -> str:
    """A server and the credentials used on it: what one failed login says nothing beyond."""
    return "|".join(
        str(part)
        for part in (config.endpoint, config.host_key, config.private_key_ref, config.password_ref)
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_export_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ExportSettings:
    """Tunables of the export use case."""

    spool_dir: Path
    stale_temp_age: timedelta = timedelta(hours=1)
    line_chunk_size: int = 1000


@dataclass(frozen=True)
class ExportOutcome:
    """What exporting one draft did, and the file that still has to be archived (if any)."""

    ref: DraftRef
    action: OutcomeAction
    record: ExportRecord
    spool_file: Path | None

    @property
    def export_id(self) -> str:
        return self.record.id


@dataclass
class ExportService:
    """Exports drafts through the ports; one instance per run.

    Per run it caches each org's connector config (read once per org, not once per draft: a
    batch of 1,000 drafts over 4 orgs makes 4 lookups) and the folders it has swept.
    """

    drafts: DraftSource
    configs: ConnectorConfigs
    ledger: ExportLedger
    dropzones: DropzoneConnector
    store: ExportStore
    settings: ExportSettings
    liveness: RunLiveness | None = None
    # Resolves the real paths of local folders and names the code location's own folders
    # (the connector rules read no filesystem); None skips those rules.
    local_folders: Callable[[Sequence[ConnectorConfig]], LocalFolders] | None = None
    log: Logger = field(default_factory=lambda: logging.getLogger("orderflow_exports"))
    clock: Callable[[], datetime] = utc_now
    new_id: Callable[[], str] = new_export_id
    _swept: set[tuple[str, str]] = field(default_factory=set)
    _configs: dict[str, ConnectorConfig | None] = field(default_factory=dict)
    _all_configs: list[ConnectorConfig] | None = None
    _config_problems: dict[str, list[str]] = field(default_factory=dict)
    _local: LocalFolders | None = None
    # Logins (server and credentials) that failed in this run, with the org that met the
    # failure: their other drafts fail fast, without a new row. Keyed by the credentials too, so
    # that one org's wrong key never stops another org on the same server and user name.
    _down: dict[str, tuple[str, ExportError]] = field(default_factory=dict)

    def config_for(self, ref: DraftRef) -> ConnectorConfig:
        """The org's enabled connector, checked against the connector rules (once per run).

        Rows may be written by other tools than the CLI, so the rules (folders apart from each
        other and from every other org's on the host, secret references in the org's scope) are
        checked again here; a config breaking one fails its own org only, with CONFIG.
        """
        if ref.org_id not in self._configs:
            self._configs[ref.org_id] = self.configs.get(ref.org_id)
        config = self._configs[ref.org_id]
        if config is None or not config.enabled:
            state = "disabled" if config is not None else "not configured"
            raise ConnectorNotConfigured(
                f"org {ref.org_id} has no enabled DROPZONE_JSON_V1 connector ({state}); "
                "set one with `orderflow-exports connectors set`"
            )
        if ref.org_id not in self._config_problems:
            if self._all_configs is None:
                # Every row, enabled or not: a disabled org's folders still hold its files.
                self._all_configs = self.configs.list()
                if self.local_folders is not None:
                    self._local = self.local_folders([config, *self._all_configs])
            # Only rows older than this one count: a row written later cannot stop this org.
            self._config_problems[ref.org_id] = connector_problems(
                config, self._all_configs, local=self._local, conflicts_with="earlier"
            )
        problems = self._config_problems[ref.org_id]
        if problems:
            raise ExportError(
                ExportError.CONFIG,
                f"connector of org {ref.org_id} is refused: {'; '.join(problems)}; fix it with "
                "`orderflow-exports connectors set`",
                transient=False,
            )
        return config

    def load_exportable(self, ref: DraftRef) -> DraftOrder:
        """The draft if it may be exported; raises DraftRefused with the reason otherwise."""
        return ensure_exportable(ref, self.drafts.get_draft(ref))

    def export(
        self,
        ref: DraftRef,
        *,
        force: bool = False,
        run_id: str | None = None,
        related_run_ids: Collection[str] = (),
    ) -> ExportOutcome:
        """Export one draft, idempotently (see the module docstring).

        ``related_run_ids`` are earlier tries of this run (a step or run retry): a draft that
        already failed permanently in one of them fails again without another attempt.
        """
        config = self.config_for(ref)
        if _login_key(config) in self._down:
            self._session_for(config)  # raises: no document, no row for a dropzone that is down
        draft = self.load_exportable(ref)
        latest = self.ledger.latest(ref)
        if latest is not None and not force:
            self._refuse_repeating_a_permanent_failure(latest, {run_id, *related_run_ids})
        if latest is not None and latest.status is ExportStatus.PENDING:
            latest = self._reconcile_pending(latest, config, run_id)
            if latest.status is ExportStatus.SENT and not force:
                return ExportOutcome(ref, "recovered", latest, self._spool_if_present(latest))
        if (
            latest is not None
            and latest.status in (ExportStatus.SENT, ExportStatus.ACKED)
            and not force
        ):
            self.log.info(
                f"{ref}: latest export {latest.id} is {latest.status}; not sending it again"
            )
            return ExportOutcome(ref, "already_sent", latest, self._spool_if_present(latest))
        return self._new_attempt(ref, draft, config, latest, force=force, run_id=run_id)

    @staticmethod
    def _refuse_repeating_a_permanent_failure(
        latest: ExportRecord, this_run: set[str | None]
    ) -> None:
        if (
            latest.status is ExportStatus.FAILED
            and latest.dagster_run_id in this_run
            and (latest.error_message or "").endswith(f"({PERMANENT})")
        ):
            raise ExportError(
                latest.error_code or ExportError.IO,
                f"attempt {latest.attempt} ({latest.id}) already failed permanently in this run: "
                f"{latest.error_message}",
                transient=False,
            )

    def _reconcile_pending(
        self, pending: ExportRecord, config: ConnectorConfig, run_id: str | None
    ) -> ExportRecord:
        owner = pending.dagster_run_id
        if owner and owner != run_id and self.liveness and self.liveness.is_active(owner):
            raise AlreadyInFlight(
                f"draft {pending.ref} is already in flight: export {pending.id} is PENDING in "
                f"run {owner}, which is still running; not sending it twice"
            )
        # The owner may be dead, or only stalled and about to go on: the decision fences it off.
        session = self.dropzones.session_for(config)
        settled, verdict = self._settle_unpublished(
            pending,
            session,
            config.export_path,
            code=ExportError.INTERRUPTED,
            message=f"run {owner} ended before the file was published (transient)",
        )
        if verdict == "landed":
            self.log.warning(
                f"{pending.ref}: export {pending.id} was PENDING but its file is in the "
                "dropzone; recorded it as SENT instead of sending a second copy"
            )
        elif verdict == "unconfirmed":
            self.log.warning(
                f"{pending.ref}: export {pending.id} was PENDING, its rename was issued and "
                "no file remains in the dropzone (the ERP may have taken it): recorded as "
                "SENT, unconfirmed; the ERP's ack or the ack deadline settles it"
            )
        elif verdict == "failed":
            self.log.warning(
                f"{pending.ref}: export {pending.id} was interrupted before its final rename "
                "and can no longer be renamed by its run; marked FAILED (INTERRUPTED), making "
                "a new attempt"
            )
        return settled

    def _new_attempt(
        self,
        ref: DraftRef,
        draft: DraftOrder,
        config: ConnectorConfig,
        latest: ExportRecord | None,
        *,
        force: bool,
        run_id: str | None,
    ) -> ExportOutcome:
        # Connect before anything is built or recorded: a server that refuses the connection
        # costs no document and no row (one row per real attempt at publishing). A permanent
        # refusal (host key, auth) goes on to make its FAILED row, where people look for it.
        try:
            self._session_for(config)
        except NotAttempted:
            raise
        except ExportError as error:
            if error.transient:
                if error.code in _CONNECTION_CODES:
                    self.dropzones.discard(config)
                if error.code in _ENDPOINT_DOWN_CODES and config.transport == "sftp":
                    self._mark_down(config, error)
                raise
        export_id = self.new_id()
        attempt = 1 if latest is None else latest.attempt + 1
        created_at = self.clock().replace(microsecond=0)
        filename = export_filename(ref, created_at, export_id)
        spool = self.spool_path(ref, export_id)
        header = build_header(draft, export_id=export_id, attempt=attempt, created_at=created_at)
        try:
            spool.parent.mkdir(parents=True, exist_ok=True)
            with spool.open("wb") as out:
                stats = write_document(
                    out, header, self.drafts.iter_lines(ref, self.settings.line_chunk_size)
                )
        except OSError as exc:
            # The spool is local scratch space: a full or failing disk there says nothing about
            # the draft, and may pass. No row exists yet, so nothing is FAILED in the ledger.
            with contextlib.suppress(OSError):
                spool.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise ExportError(
                ExportError.DISK_FULL if full else ExportError.IO,
                f"cannot write the document of {ref} into the spool folder "
                f"{self.settings.spool_dir}: {exc.strerror or exc} (errno {exc.errno}); "
                "free space there or set the export store's spool_dir",
                transient=True,
            ) from exc
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        supersede = latest.id if force and latest and latest.status is ExportStatus.SENT else None
        scoped_store = self.store.for_org(ref.org_id)
        try:
            record = self.ledger.create_pending(
                NewExport(
                    id=export_id,
                    ref=ref,
                    attempt=attempt,
                    filename=filename,
                    dropzone_path=posixpath.join(config.export_path, filename),
                    storage_key=scoped_store.location(scoped_store.key_for(ref, export_id)),
                    content_sha256=stats.sha256,
                    byte_size=stats.byte_size,
                    line_count=stats.line_count,
                    forced=force,
                    dagster_run_id=run_id,
                    created_at=created_at,
                ),
                supersede=supersede,
            )
        except BaseException:
            spool.unlink(missing_ok=True)  # no row refers to it: nothing will ever archive it
            raise
        sent = self._publish(record, config, spool)
        self.log.info(
            f"{ref}: export {export_id} (attempt {attempt}) sent as {record.dropzone_path} "
            f"({stats.byte_size} bytes, {stats.line_count} lines)"
        )
        return ExportOutcome(ref, "sent", sent, spool)

    def _publish(self, record: ExportRecord, config: ConnectorConfig, spool: Path) -> ExportRecord:
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
            session = self._session_for(config)
            self._sweep_once(session, config)
            session.publish(
                config.export_path, record.filename, spool, record.byte_size, before_rename
            )
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, ExportError)
                else ExportError(ExportError.IO, f"{type(exc).__name__}: {exc}", transient=True)
            )
            if isinstance(error, ClaimLost):
                spool.unlink(missing_ok=True)  # the row is not ours: it will never be archived
                raise
            if error.code in _CONNECTION_CODES:
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
                if error.code in _ENDPOINT_DOWN_CODES and config.transport == "sftp":
                    self._mark_down(config, error)
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
            session = self._session_for(config)
            settled, verdict = self._settle_unpublished(
                record,
                session,
                config.export_path,
                code=error.code,
                message=f"{error.message} ({error.kind})",  # read by the permanent-failure rule
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

    def _settle_unpublished(
        self,
        record: ExportRecord,
        session: DropzoneSession,
        folder: str,
        *,
        code: str,
        message: str,
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
                failed = self._settle_as_failed(current, code, message)
                # Only tidiness from here: the row can no longer be renamed by anyone, and a
                # temp file left behind is swept as stale later.
                try:
                    session.remove_temp(folder, record.filename)
                except ExportError as exc:
                    self.log.warning(f"{record.ref}: temp file of {record.id} left: {exc}")
                return failed
            if session.remove_temp(folder, record.filename):
                return self._settle_as_failed(current, code, message)
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
        self, record: ExportRecord, code: str, message: str
    ) -> tuple[ExportRecord, SettleVerdict]:
        moved = not self.ledger.mark_failed(
            record.id, expected=ExportStatus.PENDING, code=code, message=message, at=self.clock()
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

    def _session_for(self, config: ConnectorConfig) -> DropzoneSession:
        down = self._down.get(_login_key(config))
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

    def _mark_down(self, config: ConnectorConfig, error: ExportError) -> None:
        self._down.setdefault(_login_key(config), (config.org_id, error))

    def _fail(self, record: ExportRecord, error: ExportError) -> bool:
        return self.ledger.mark_failed(
            record.id,
            expected=ExportStatus.PENDING,
            code=error.code,
            message=f"{error.message} ({error.kind})",  # read back by the permanent-failure rule
            at=self.clock(),
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

    def _spool_if_present(self, record: ExportRecord) -> Path | None:
        path = self.spool_path(record.ref, record.id)
        return path if path.exists() else None
