"""The typed failure model: codes that know whether they may pass, errors that carry it."""

from __future__ import annotations

import pytest

from orderflow_exports.domain.errors import ErrorCode, ExportError, NotAttempted, stored_transience


def test_the_contract_codes_are_exactly_the_enum() -> None:
    assert {str(c) for c in ErrorCode} == {
        "CONNECTION", "TIMEOUT", "AUTH", "HOST_KEY", "PERMISSION", "DISK_FULL", "NAME_EXISTS",
        "SIZE_MISMATCH", "CONFIG", "VALIDATION", "ARCHIVE", "IO", "INTERRUPTED", "SUPERSEDED",
        "ERP_REJECTED", "ACK_TIMEOUT",
    }  # fmt: skip


def test_only_connection_and_timeout_pass_by_themselves() -> None:
    assert {c for c in ErrorCode if c.transient} == {ErrorCode.CONNECTION, ErrorCode.TIMEOUT}
    assert {c for c in ErrorCode if c.cause_decides} == {
        ErrorCode.ARCHIVE,
        ErrorCode.IO,
        ErrorCode.INTERRUPTED,
    }


def test_an_error_takes_its_transience_from_its_code_unless_told() -> None:
    assert ExportError(ErrorCode.CONNECTION, "refused").transient is True
    assert ExportError("AUTH", "denied").transient is False
    assert ExportError(ErrorCode.AUTH, "denied").code is ErrorCode.AUTH
    told = ExportError(ErrorCode.ARCHIVE, "SlowDown", transient=True)
    assert told.transient and told.kind == "transient" and str(told) == "[ARCHIVE] SlowDown"


@pytest.mark.parametrize("code", [ErrorCode.ARCHIVE, ErrorCode.IO, ErrorCode.INTERRUPTED])
def test_a_code_whose_cause_decides_must_be_told(code: ErrorCode) -> None:
    with pytest.raises(TypeError, match=f"ExportError\\({code}\\): say whether"):
        ExportError(code, "something")


def test_an_unknown_code_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="NOPE"):
        ExportError("NOPE", "x", transient=False)


def test_not_attempted_keeps_the_code_and_transience_of_the_login_failure() -> None:
    error = NotAttempted(ErrorCode.AUTH, "not attempted: the login already failed")
    assert error.code is ErrorCode.AUTH and error.transient is False


@pytest.mark.parametrize(
    ("code", "transient", "stored"),
    [
        ("TIMEOUT", None, True),
        ("SUPERSEDED", None, False),
        ("ACK_TIMEOUT", None, False),
        ("IO", None, None),
        ("IO", True, True),
        ("AUTH", True, True),  # the raiser's word wins
        (None, None, None),
        ("LEGACY", None, None),
    ],
)
def test_what_the_ledger_stores(
    code: str | None, transient: bool | None, stored: bool | None
) -> None:
    assert stored_transience(code, transient) is stored
