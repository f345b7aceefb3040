"""Faults that a local dropzone cannot produce for real, injected at one seam each.

- **An unreachable dropzone server.** A local folder never refuses a connection, so
  :func:`outage_publish` is a ``LocalDropzoneSession.publish`` that raises the transient
  ``CONNECTION`` ``ExportError`` the SFTP adapter raises when the server is down, as long as a
  switch file says so: ``N`` in it fails the next N publishes, ``-1`` fails them until the file
  is removed.
  The switch is a file so that every process of a run (the run worker, step processes) shares it.
- **A crash at a chosen point.** ``python -m orderflow_exports_tests.support.fault_injection
  crash POINT KEY`` runs ``export_drafts_job`` for partition KEY in that process, on the instance
  of ``$DAGSTER_HOME``, and SIGKILLs the process at POINT: ``rename`` (the temp file is written,
  the final name not yet given) or ``mark_sent`` (the final file is published, the row is still
  PENDING). Nothing is cleaned up, exactly as when a node dies.

Used as a code location (``python_module: orderflow_exports_tests.support.fault_injection``), this
module exposes the real :data:`defs` and installs the outage switch named by the environment
variable ``ORDERFLOW_TEST_OUTAGE_SWITCH``, so a daemon-launched run meets the outage too.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orderflow_exports import defs
from orderflow_exports.adapters import local_dropzone
from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.domain.errors import ErrorCode, ExportError

OUTAGE_SWITCH_ENV = "ORDERFLOW_TEST_OUTAGE_SWITCH"
UNTIL_REMOVED = -1
CRASH_POINTS = ("rename", "mark_sent")

__all__ = ["defs", "outage_publish", "set_outage"]

_real_publish = LocalDropzoneSession.publish


def set_outage(switch: Path, failures: int = UNTIL_REMOVED) -> None:
    """Start an outage: the next ``failures`` publishes fail (-1: until ``switch`` is removed)."""
    switch.write_text(str(failures))


def _outage_takes(switch: Path) -> bool:
    """Whether this publish meets the outage (and count it)."""
    try:
        handle = switch.open("r+")
    except FileNotFoundError:
        return False
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        left = int(handle.read().strip() or 0)
        if left == 0:
            return False
        if left > 0:
            handle.seek(0)
            handle.truncate()
            handle.write(str(left - 1))
        return True


def outage_publish(switch: Path) -> Any:
    """A ``LocalDropzoneSession.publish`` that honours ``switch`` (to patch in with monkeypatch)."""

    def publish(
        self: LocalDropzoneSession,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        if _outage_takes(switch):
            raise ExportError(
                ErrorCode.CONNECTION,
                f"dropzone for {folder} unreachable: [Errno 111] Connection refused "
                "(injected outage)",
                transient=True,
            )
        return _real_publish(self, folder, final_name, source, expected_size, before_rename)

    return publish


def _install_from_env() -> None:
    switch = os.environ.get(OUTAGE_SWITCH_ENV)
    if switch:
        LocalDropzoneSession.publish = outage_publish(Path(switch))  # type: ignore[method-assign]


def _die(*_args: object, **_kwargs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_during_export(point: str, partition_key: str) -> None:
    """Run ``export_drafts_job`` for one partition here and SIGKILL this process at ``point``."""
    import dagster as dg

    if point == "rename":
        local_dropzone._link_no_replace = _die  # type: ignore[assignment]
    elif point == "mark_sent":
        SqlExportLedger.mark_sent = _die  # type: ignore[method-assign,assignment]
    else:
        raise SystemExit(f"unknown crash point {point!r}; one of {CRASH_POINTS}")
    job = defs.resolve_job_def("export_drafts_job")
    with dg.DagsterInstance.get() as instance:
        job.execute_in_process(instance=instance, partition_key=partition_key)
    raise SystemExit(f"the run ended without reaching {point}")


_install_from_env()

if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "crash":
        raise SystemExit(f"usage: {sys.argv[0]} crash {{{','.join(CRASH_POINTS)}}} PARTITION_KEY")
    crash_during_export(sys.argv[2], sys.argv[3])
