"""A run that stops itself (SIGSTOP) at a chosen point of its publish, as a stalled node does.

Used as the code location of ``dagster job execute -m
orderflow_exports_tests.support.stall_injection``: this module exposes the real :data:`defs`, and
when the environment variable ``ORDERFLOW_TEST_STALL_AT`` names a point, the first publish that
reaches it stops the whole process until someone sends SIGCONT:

- ``temp_written``: the temp file is complete in the dropzone (local or SFTP), its claim on the
  final rename (``mark_renaming``) not yet taken;
- ``renaming``: the claim is taken (``rename_started_at`` is set), the rename not yet issued.

Stopping at a real seam makes the window deterministic; everything else (the dropzone, the
database, the Dagster instance, the process) is real.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from orderflow_exports import defs
from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sftp.session import SftpDropzoneSession
from orderflow_exports.adapters.sql.ledger import SqlExportLedger

STALL_AT_ENV = "ORDERFLOW_TEST_STALL_AT"
STALL_POINTS = ("temp_written", "renaming")

__all__ = ["STALL_AT_ENV", "STALL_POINTS", "defs"]

_stalled: list[str] = []


def _stall_once(point: str) -> None:
    if not _stalled:
        _stalled.append(point)
        os.kill(os.getpid(), signal.SIGSTOP)


def _install(point: str) -> None:
    if point == "temp_written":
        real_local = LocalDropzoneSession._write_temp
        real_sftp = SftpDropzoneSession._write_temp

        def local_write_temp(*args: Any) -> None:
            real_local(*args)
            _stall_once(point)

        def sftp_write_temp(self: SftpDropzoneSession, *args: Any) -> Any:
            attrs = real_sftp(self, *args)
            _stall_once(point)
            return attrs

        LocalDropzoneSession._write_temp = staticmethod(local_write_temp)  # type: ignore[method-assign,assignment]
        SftpDropzoneSession._write_temp = sftp_write_temp  # type: ignore[method-assign]
    elif point == "renaming":
        real_mark_renaming = SqlExportLedger.mark_renaming

        def mark_renaming(self: SqlExportLedger, export_id: str, **kwargs: Any) -> bool:
            claimed = real_mark_renaming(self, export_id, **kwargs)
            if claimed:
                _stall_once(point)
            return claimed

        SqlExportLedger.mark_renaming = mark_renaming  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown stall point {point!r}; one of {STALL_POINTS}")


if os.environ.get(STALL_AT_ENV):
    _install(os.environ[STALL_AT_ENV])
