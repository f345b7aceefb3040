"""S3 failures as the export store reports them: ``ExportError(ARCHIVE)``, transient or not,
and the two answers that are outcomes rather than failures (the key exists, the key is absent)."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from orderflow_exports.domain.errors import ErrorCode, ExportError

# Error codes worth retrying later even though the server answered: throttling, server trouble,
# a concurrent conditional write (409), an upload aborted under us, bytes damaged in transit.
_TRANSIENT_CODES = frozenset(
    {
        "BadDigest",
        "ConditionalRequestConflict",
        "ExpiredToken",
        "InternalError",
        "NoSuchUpload",
        "OperationAborted",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def classify_error(exc: BaseException, action: str, where: str) -> ExportError:
    """Turn a botocore failure into an ``ExportError(ARCHIVE)`` with the right ``transient`` flag.

    Connection trouble, timeouts, throttling and 5xx are transient; refused credentials (403), a
    missing bucket and every other client error are permanent because retrying cannot fix them.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        transient = code in _TRANSIENT_CODES or status >= 500 or status == 429
        detail = f"{code} (HTTP {status or '?'}): {error.get('Message', exc)}"
    elif isinstance(exc, SSLError):
        # Certificate trouble is configuration; SSLError is also a ConnectionError, so check first.
        transient, detail = False, f"{type(exc).__name__}: {exc}"
    elif isinstance(
        exc, BotoConnectionError | HTTPClientError | IncompleteReadError | FlexibleChecksumError
    ):
        transient, detail = True, f"{type(exc).__name__}: {exc}"
    else:
        transient, detail = False, f"{type(exc).__name__}: {exc}"
    return ExportError(ErrorCode.ARCHIVE, f"{action} {where}: {detail}", transient=transient)


def is_precondition_failed(exc: ClientError) -> bool:
    """The server refused a conditional write (``If-None-Match: *``): the key already exists."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return exc.response.get("Error", {}).get("Code") == "PreconditionFailed" or status == 412


def is_not_found(exc: ClientError) -> bool:
    """The key does not exist (a missing bucket is not this: it stays an error)."""
    # By code, not by status: NoSuchBucket is a 404 too, and must stay a (permanent) error.
    return exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES
