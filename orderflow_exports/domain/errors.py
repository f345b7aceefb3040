"""Errors the domain and its ports speak in: one typed failure model.

Every failure an export can meet is an :class:`ExportError` with an :class:`ErrorCode` (stored
in ``erp_export.error_code``) and a ``transient`` flag (stored in ``erp_export.error_transient``)
that decides whether Dagster retries it and whether a later run may try the draft again.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why an export attempt failed, as stored in ``erp_export.error_code``.

    Most codes fix whether trying again later can help (:attr:`transient`); for ``ARCHIVE``,
    ``IO`` and ``INTERRUPTED`` the cause decides (a throttled S3 call passes, a missing bucket
    does not; a run that died before its rename may be tried again, a run that lost its claim
    must not rename), so the raiser must say (:attr:`cause_decides`).
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
    # Set by the ledger and the ack pass, never raised by a transport:
    SUPERSEDED = "SUPERSEDED"
    ERP_REJECTED = "ERP_REJECTED"
    ACK_TIMEOUT = "ACK_TIMEOUT"

    @property
    def cause_decides(self) -> bool:
        return self in _CAUSE_DECIDES

    @property
    def transient(self) -> bool:
        """Whether trying again later can succeed; for ``cause_decides`` codes, the usual case."""
        return self in _TRANSIENT


_TRANSIENT = frozenset({ErrorCode.CONNECTION, ErrorCode.TIMEOUT})
_CAUSE_DECIDES = frozenset({ErrorCode.ARCHIVE, ErrorCode.IO, ErrorCode.INTERRUPTED})


def stored_transience(code: str | None, transient: bool | None = None) -> bool | None:
    """What ``erp_export.error_transient`` records for a failure: the raiser's word, else the
    code's own when the code fixes it, else unknown (``None``)."""
    if transient is not None:
        return transient
    try:
        known = ErrorCode(code) if code is not None else None
    except ValueError:
        return None
    if known is None or known.cause_decides:
        return None
    return known.transient


class OrderflowError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidIdentifier(OrderflowError, ValueError):
    """An org id, draft id or partition key breaks the id rule (1-64 chars of [A-Za-z0-9_-])."""


class DraftRefused(OrderflowError):
    """A draft cannot be exported as it is (not APPROVED, no lines, invalid data)."""


class ConnectorNotConfigured(OrderflowError):
    """The draft's org has no enabled DROPZONE_JSON_V1 connector config."""


class AlreadyInFlight(OrderflowError):
    """Another attempt for the same draft is PENDING or SENT right now."""


class ExportError(OrderflowError):
    """A classified failure of one export attempt.

    ``code`` is an :class:`ErrorCode`; ``transient`` tells whether trying again later can
    succeed (a dropped connection) or not (a wrong host key). It defaults to the code's own and
    must be given for codes whose cause decides (``ARCHIVE``, ``IO``, ``INTERRUPTED``).
    """

    def __init__(
        self, code: ErrorCode | str, message: str, *, transient: bool | None = None
    ) -> None:
        known = ErrorCode(code)
        if transient is None:
            if known.cause_decides:
                raise TypeError(f"ExportError({known}): say whether this failure is transient")
            transient = known.transient
        super().__init__(f"[{known}] {message}")
        self.code = known
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
        super().__init__(ErrorCode.CONNECTION, message, transient=True)


class ClaimLost(ExportError):
    """This process no longer owns the export row: another run reconciled it meanwhile.

    Raised instead of renaming (or instead of claiming success); the row is left as it is.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERRUPTED, message, transient=False)


class ArchiveConflict(OrderflowError):
    """The archive already holds different bytes under the same key (a key is written once)."""


class NotAttempted(ExportError):
    """The draft was not tried: its dropzone login already failed earlier in the same run.

    No ``erp_export`` row is made for it; ``code`` and ``transient`` are those of that failure.
    """
