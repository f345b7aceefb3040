"""Errors the domain and its ports speak in.

Every failure an export can meet is an :class:`ExportError` with a stable ``code`` (stored in
``erp_export.error_code``) and a ``transient`` flag that decides whether Dagster retries it.
"""

from __future__ import annotations


class OrderflowError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidIdentifier(OrderflowError, ValueError):
    """An org id, draft id or partition key breaks the id rule (CONTRACT §1)."""


class DraftRefused(OrderflowError):
    """A draft cannot be exported as it is (not APPROVED, no lines, invalid data)."""


class ConnectorNotConfigured(OrderflowError):
    """The draft's org has no enabled DROPZONE_JSON_V1 connector config."""


class AlreadyInFlight(OrderflowError):
    """Another attempt for the same draft is PENDING or SENT right now."""


class ExportError(OrderflowError):
    """A classified failure of one export attempt.

    ``code`` is one of the ``*`` constants below; ``transient`` tells whether trying again
    later can succeed (a dropped connection) or not (a wrong host key).
    """

    CONNECTION = "CONNECTION"
    TIMEOUT = "TIMEOUT"
    AUTH = "AUTH"
    HOST_KEY = "HOST_KEY"
    PERMISSION = "PERMISSION"
    DISK_FULL = "DISK_FULL"
    NAME_EXISTS = "NAME_EXISTS"
    SIZE_MISMATCH = "SIZE_MISMATCH"
    CONFIG = "CONFIG"
    VALIDATION = "VALIDATION"
    ARCHIVE = "ARCHIVE"
    IO = "IO"
    INTERRUPTED = "INTERRUPTED"

    def __init__(self, code: str, message: str, *, transient: bool) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.transient = transient

    @property
    def kind(self) -> str:
        return "transient" if self.transient else "permanent"


class RenameOutcomeUnknown(ExportError):
    """The final rename was sent but its reply never came: it may or may not have happened.

    Nothing may be uploaded again for that attempt; the caller settles it against the dropzone.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ExportError.CONNECTION, message, transient=True)


class ClaimLost(ExportError):
    """This process no longer owns the export row: another run reconciled it meanwhile.

    Raised instead of renaming (or instead of claiming success); the row is left as it is.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ExportError.INTERRUPTED, message, transient=False)


class ArchiveConflict(OrderflowError):
    """The archive already holds different bytes under the same key (a key is written once)."""


class NotAttempted(ExportError):
    """The draft was not tried: its dropzone login already failed earlier in the same run.

    No ``erp_export`` row is made for it; ``code`` and ``transient`` are those of that failure.
    """
