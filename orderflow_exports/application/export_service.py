"""The export use case: one approved draft → one file in its org's dropzone and a ledger row.

Plain Python over the ports; the Dagster assets only wire it. The rules:

- a draft whose latest export is SENT or ACKED is not sent again unless ``force`` is asked;
- only the holder of the rename right (``mark_renaming``, taken once per row) may give a file its
  final name; a run whose claim is refused never renames and fails with "lost its claim";
- a PENDING export of a run that is no longer active (dead, or stalled and able to go on) is
  settled first by the settle rule (``Publisher.settle_unpublished``): its final file there →
  SENT; else the rename right is taken from it, or its temp file removed, before it may become
  FAILED (``INTERRUPTED``) and a new attempt is made; rename issued and no file left (the ERP may
  have taken it) → SENT, unconfirmed, so that the ack or the ack deadline decides, never a second
  copy;
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from orderflow_exports.application.publishing import (
    CONNECTION_CODES,
    ENDPOINT_DOWN_CODES,
    ExportSettings,
    Publisher,
    utc_now,
)
from orderflow_exports.domain.connector_rules import LocalFolders, connector_problems
from orderflow_exports.domain.document import build_header, write_document
from orderflow_exports.domain.drafts import DraftOrder, ensure_exportable
from orderflow_exports.domain.errors import (
    AlreadyInFlight,
    ConnectorNotConfigured,
    ErrorCode,
    ExportError,
    NotAttempted,
)
from orderflow_exports.domain.naming import DraftRef, export_filename
from orderflow_exports.domain.ports import (
    ConnectorConfigs,
    DraftSource,
    DropzoneConnector,
    ExportLedger,
    ExportStore,
    Logger,
    RunLiveness,
)
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus

OutcomeAction = Literal["sent", "already_sent", "recovered"]


def new_export_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ExportOutcome:
    """What exporting one draft did, and the file that still has to be archived (if any)."""

    ref: DraftRef
    action: OutcomeAction
    record: ExportRecord
    spool_file: Path | None
    # Set by the archive step once it has handled the file (stored it, found it stored, or
    # reported it gone): the key in the store; handing the outcome over again writes nothing.
    archive_key: str | None = None

    @property
    def export_id(self) -> str:
        return self.record.id


@dataclass
class ExportService:
    """Exports drafts through the ports; one instance per run.

    Per run it caches each org's connector config (read once per org, not once per draft: a
    batch of 1,000 drafts over 4 orgs makes 4 lookups); its :class:`Publisher` publishes and
    settles each row's file.
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
    _configs: dict[str, ConnectorConfig | None] = field(default_factory=dict)
    _all_configs: list[ConnectorConfig] | None = None
    _config_problems: dict[str, list[str]] = field(default_factory=dict)
    _local: LocalFolders | None = None
    publisher: Publisher = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = Publisher(
            ledger=self.ledger,
            dropzones=self.dropzones,
            settings=self.settings,
            log=self.log,
            clock=self.clock,
        )

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
                ErrorCode.CONFIG,
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
        if self.publisher.login_failed(config):
            self.publisher.session_for(
                config
            )  # raises: no document, no row for a dropzone that is down
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
            and latest.error_transient is False
        ):
            raise ExportError(
                latest.error_code or ErrorCode.IO,
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
        settled, verdict = self.publisher.settle_unpublished(
            pending,
            session,
            config.export_path,
            code=ErrorCode.INTERRUPTED,
            message=f"run {owner} ended before the file was published (transient)",
            transient=True,
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
            self.publisher.session_for(config)
        except NotAttempted:
            raise
        except ExportError as error:
            if error.transient:
                if error.code in CONNECTION_CODES:
                    self.dropzones.discard(config)
                if error.code in ENDPOINT_DOWN_CODES and config.transport == "sftp":
                    self.publisher.mark_down(config, error)
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
                ErrorCode.DISK_FULL if full else ErrorCode.IO,
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
        sent = self.publisher.publish(record, config, spool)
        self.log.info(
            f"{ref}: export {export_id} (attempt {attempt}) sent as {record.dropzone_path} "
            f"({stats.byte_size} bytes, {stats.line_count} lines)"
        )
        return ExportOutcome(ref, "sent", sent, spool)

    def spool_path(self, ref: DraftRef, export_id: str) -> Path:
        return self.publisher.spool_path(ref, export_id)

    def _spool_if_present(self, record: ExportRecord) -> Path | None:
        path = self.spool_path(record.ref, record.id)
        return path if path.exists() else None
