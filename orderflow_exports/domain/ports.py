"""The ports: small Protocols the application needs, implemented by ``adapters``."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from orderflow_exports.domain.drafts import DraftLine, DraftOrder
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.export_requests import (
    CandidatePage,
    ExportRequest,
    RequestOutcome,
    RequestReason,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus

EntryKind = Literal["file", "dir", "symlink", "fifo", "other"]


class Logger(Protocol):
    """What the use cases log through (``logging.Logger`` and Dagster's ``context.log``)."""

    def info(self, msg: str, *args: object) -> None: ...

    def warning(self, msg: str, *args: object) -> None: ...

    def error(self, msg: str, *args: object) -> None: ...


@dataclass(frozen=True)
class FolderEntry:
    """One entry of a folder listing, as the entry itself is (never what a symlink points to)."""

    name: str
    kind: EntryKind
    size: int | None = None
    mtime: float | None = None  # seconds since the epoch, by the file server's clock


class NotARegularFile(ExportError):
    """The name was a regular file when listed but is something else now (e.g. a symlink)."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(ErrorCode.IO, f"{path} is {found}, not a regular file", transient=False)
        self.found = found


class DraftSource(Protocol):
    """Reads drafts from OrderFlow core (read-only)."""

    def get_draft(self, ref: DraftRef) -> DraftOrder | None: ...

    def iter_lines(self, ref: DraftRef, chunk_size: int = 1000) -> Iterator[DraftLine]:
        """Lines in ``line_no`` order, fetched ``chunk_size`` at a time."""
        ...

    def find_export_candidates(
        self,
        limit: int,
        now: datetime,
        after: object | None = None,
        *,
        changed_since: datetime | None = None,
        due_only: bool = False,
    ) -> CandidatePage:
        """APPROVED drafts without a PENDING/SENT/ACKED export that may need a request at
        ``now``, with their request records, oldest approval first; undecodable rows are
        reported in the page, not raised. ``after`` is the previous page's ``cursor``.
        ``changed_since``: only drafts changed at or after it, in change order; ``due_only``:
        only drafts whose request record is due at ``now``."""
        ...


class ConnectorConfigs(Protocol):
    """Reads and writes ``erp_connector_config``."""

    def get(self, org_id: str) -> ConnectorConfig | None: ...

    def list(self, *, enabled_only: bool = False) -> builtins.list[ConnectorConfig]: ...

    def upsert(self, config: ConnectorConfig) -> None: ...


class ExportLedger(Protocol):
    """``erp_export``: one row per attempt; every status change is a compare-and-set."""

    def get(self, export_id: str) -> ExportRecord | None: ...

    def latest(self, ref: DraftRef) -> ExportRecord | None: ...

    def create_pending(self, new: NewExport, *, supersede: str | None = None) -> ExportRecord:
        """Insert a PENDING row; raises AlreadyInFlight when the draft has an active row.

        ``supersede`` names a SENT export that a forced attempt replaces: it becomes FAILED
        (``SUPERSEDED``) in the same transaction.
        """
        ...

    def mark_renaming(self, export_id: str, *, at: datetime) -> bool:
        """Take the one right to issue the row's final rename (a compare-and-set).

        Succeeds only on a PENDING row whose ``rename_started_at`` is still empty, so at most one
        caller ever gets it: the run about to rename, or a reconciler fencing a stalled run off.
        Before it, the file can never have been under its final name; after it, a missing final
        file proves nothing (the ERP may already have taken it).
        """
        ...

    def mark_sent(self, export_id: str, *, at: datetime) -> bool: ...

    def mark_failed(
        self,
        export_id: str,
        *,
        expected: ExportStatus | tuple[ExportStatus, ...],
        code: str,
        message: str,
        at: datetime,
        transient: bool | None = None,
    ) -> bool:
        """PENDING/SENT → FAILED by compare-and-set; ``transient`` defaults to the code's own
        (see ``ErrorCode``) and is stored beside it."""
        ...

    def mark_acked(
        self,
        export_id: str,
        *,
        expected: ExportStatus | tuple[ExportStatus, ...],
        erp_order_number: str | None,
        at: datetime,
    ) -> bool: ...

    def list(
        self,
        *,
        org_id: str | None = None,
        status: ExportStatus | None = None,
        limit: int = 100,
    ) -> builtins.list[ExportRecord]: ...

    def sent_before(self, org_id: str, cutoff: datetime, limit: int) -> builtins.list[ExportRecord]:
        """SENT exports of ``org_id`` whose ``sent_at`` is older than ``cutoff``."""
        ...

    def latest_failed(
        self,
        error_codes: Iterable[str],
        *,
        org_id: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> builtins.list[ExportRecord]:
        """FAILED exports with one of ``error_codes`` that are still their draft's latest
        attempt, oldest first unless ``newest_first``."""
        ...

    def settled_histories(
        self, cutoff: datetime, *, limit: int, after: tuple[str, str] | None = None
    ) -> builtins.list[builtins.list[ExportRecord]]:
        """Every attempt of the drafts whose latest attempt is ACKED before ``cutoff``: one
        page of at most ``limit`` drafts in (org_id, draft_order_id) order, after ``after``."""
        ...


class DropzoneSession(Protocol):
    """An open connection to one dropzone server (or the local file system)."""

    def publish(
        self,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        """Atomically place ``source`` at ``folder/final_name``; never replaces a file.

        Writes ``.{final_name}.tmp`` first, checks its size, calls ``before_rename`` and then
        renames; when ``before_rename`` raises, the temp file is removed and nothing is renamed.
        Returns the full path. Raises ExportError (classified) on any failure, leaving no temp
        file behind, except RenameOutcomeUnknown: the rename was sent and its reply lost, and
        nothing is uploaded again; the temp file, if still there, is left for the caller to
        settle with ``remove_temp``.
        """
        ...

    def exists(self, folder: str, name: str) -> bool: ...

    def remove_temp(self, folder: str, final_name: str) -> bool:
        """Remove the temp file ``.{final_name}.tmp`` of ``folder``.

        True: it was there and is gone, so no rename of it can ever succeed any more. False: it
        was not there (never written, already removed, or already renamed). Raises ExportError
        when the dropzone cannot be asked.
        """
        ...

    def sweep_stale_temps(
        self,
        folder: str,
        older_than: timedelta,
        keep: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """Remove our temp files older than ``older_than``; returns their names.

        ``keep(final_name)`` says whether to leave a stale temp file in place anyway.
        """
        ...

    def list_entries(self, folder: str) -> builtins.list[FolderEntry]:
        """Every entry of ``folder`` with its own type (lstat, symlinks not followed), sorted.

        Raises ExportError (CONFIG when ``folder`` is missing or not a folder, PERMISSION when
        it cannot be read): an absent ack folder is a fault, never "no acks".
        """
        ...

    def list_files(self, folder: str) -> builtins.list[str]:
        """Names of the regular files in ``folder`` (no symlinks, folders or FIFOs), sorted.

        Raises like :meth:`list_entries`.
        """
        ...

    def read_file(self, folder: str, name: str, max_bytes: int) -> bytes:
        """The bytes of the regular file ``folder/name``, never following a symlink.

        Raises :class:`NotARegularFile` when the name is (now) anything but a regular file, and
        ExportError(IO) when it is larger than ``max_bytes``.
        """
        ...

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        """Move ``folder/name`` into ``folder/subfolder/`` (created when missing).

        ``subfolder`` must be a real folder: a symlink there is refused (ExportError CONFIG),
        so nothing is ever moved out of ``folder``. Never overwrites: when the target exists, a
        suffix keeps both. Returns the new path.
        """
        ...

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        """Write a small file atomically (temp then rename); used for error reasons.

        The last component of ``folder`` must be a real folder (created when missing), never a
        symlink, and no symlink at ``name`` or at the temp name is followed.
        """
        ...

    def close(self) -> None: ...


class DropzoneConnector(Protocol):
    """Opens dropzone sessions; one per endpoint, reused for the whole run."""

    def session_for(self, config: ConnectorConfig) -> DropzoneSession: ...

    def discard(self, config: ConnectorConfig) -> None:
        """Forget (and close) the session of ``config``'s endpoint, e.g. after it broke."""
        ...

    def close(self) -> None: ...


class ExportStore(Protocol):
    """Archive of exported files at ``{prefix}/{org_id}/{draft_order_id}/{export_id}.json``."""

    def for_org(self, org_id: str) -> ExportStore:
        """The same store restricted to ``org_id``: keys of any other org are refused.

        ``org_id`` comes from the partition being processed, never from a document or a row.
        Scoping a view of one org to another org raises.
        """
        ...

    def key_for(self, ref: DraftRef, export_id: str) -> str: ...

    def location(self, key: str) -> str:
        """Human-readable location of ``key`` (``s3://bucket/key`` or a path); stored in rows."""
        ...

    def put_file(self, key: str, source: Path, *, sha256: str, export_id: str) -> None:
        """Write once; the same bytes again succeed, different bytes raise ArchiveConflict."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


class KnownPartitions(Protocol):
    """Which of a tick's partition keys exist already, and their order among all partitions."""

    def __contains__(self, key: object) -> bool: ...

    def position(self, key: str) -> int:
        """Where ``key`` (a known partition) stands: keys added later stand further on."""
        ...

    def adjacent(self, first: str, second: str) -> bool:
        """True when no other partition lies between ``first`` and ``second`` (in order)."""
        ...


class ExportPartitions(Protocol):
    """The orchestrator's partitions of the export assets, one per draft (by partition key)."""

    def existing(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are partitions now."""
        ...

    def add(self, keys: Sequence[str]) -> None: ...

    def remove(self, key: str) -> None: ...


class RunLiveness(Protocol):
    """Tells whether the run that owns a PENDING export may still be working on it."""

    def is_active(self, run_id: str) -> bool: ...


@dataclass(frozen=True)
class FailedRun:
    """A failed run as an alert tells of it: its id, job and tags, and the first error it
    logged (a failed step's, else the run failure's root cause), if any."""

    run_id: str
    job_name: str
    tags: Mapping[str, str]
    error: str | None = None


class RunFailures(Protocol):
    """The failed runs of a job, as the deployment's run history holds them."""

    def failed_since(
        self, job_name: str, since: datetime, *, limit: int
    ) -> builtins.list[FailedRun]:
        """Runs of ``job_name`` that failed and were last updated after ``since``."""
        ...


class ExportRequests(Protocol):
    """``erp_export_request``: what was requested per draft and how it ended (CAS writes)."""

    def get(self, ref: DraftRef) -> ExportRequest | None: ...

    def record_requests(
        self,
        planned: builtins.list[tuple[DraftRef, ExportRequest | None, RequestReason, datetime]],
        *,
        at: datetime,
    ) -> builtins.list[DraftRef]:
        """Record requests (``ref``, record as read, reason, draft ``updated_at``); returns the
        refs whose compare-and-set won."""
        ...

    def record_outcome(
        self, ref: DraftRef, outcome: RequestOutcome, reason: str, *, at: datetime
    ) -> ExportRequest: ...

    def record_outcomes(
        self, outcomes: builtins.list[tuple[DraftRef, RequestOutcome, str]], *, at: datetime
    ) -> builtins.list[ExportRequest]:
        """Several outcomes in one transaction (one run's drafts)."""
        ...

    def needing_person(
        self, *, org_id: str | None = None, limit: int = 100
    ) -> builtins.list[ExportRequest]: ...


@dataclass(frozen=True)
class LaunchedRun:
    """A run as the deployment reports it: its status and the run that retries it, if any."""

    run_id: str
    status: str  # Dagster's run status name: QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, …
    retry_run_id: str | None = None  # set once the daemon has launched a retry of this run
    will_retry: bool = False  # the daemon is going to retry this failed run


class DeploymentRuns(Protocol):
    """The running Dagster deployment, as far as re-sending drafts goes (its run queue,
    run retries and run history apply to what is launched here)."""

    def ensure_partition(self, partition_key: str) -> bool:
        """Add ``partition_key`` to the drafts' partitions; True when it was missing."""
        ...

    def launch_export(self, partition_key: str, *, tags: dict[str, str], force: bool) -> str:
        """Queue one export run of ``partition_key``; its run id."""
        ...

    def run(self, run_id: str) -> LaunchedRun:
        """The run's status now."""
        ...

    def run_url(self, run_id: str) -> str:
        """The run's page in the UI."""
        ...
