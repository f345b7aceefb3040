"""One org's ack pass in its own thread, so a hanging dropzone can be abandoned from outside.

Abandoning closes the org's session (an SFTP read blocked on a silent peer returns), sends the
worker's later log lines to the module logger (the sensor tick that started it may be over), and
remembers the thread until it ends, so no second pass of that org starts on top of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from orderflow_exports.application.acks.results import AckPassSummary
from orderflow_exports.domain.ports import DropzoneSession, Logger

_log = logging.getLogger(__name__)


class QuietAfterAbandon:
    """The pass's logger until its org is abandoned; then the module logger.

    An abandoned worker may still finish later, after the sensor tick (and its log) has ended.
    """

    def __init__(self, log: Logger, abandoned: threading.Event) -> None:
        self._log = log
        self._abandoned = abandoned

    def _target(self) -> Logger:
        return _log if self._abandoned.is_set() else self._log

    def info(self, msg: str, *args: object) -> None:
        self._target().info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self._target().warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self._target().error(msg, *args)


# Workers of orgs abandoned by an earlier pass that have not ended yet (e.g. blocked in a
# kernel call nobody can interrupt): at most one per org, so a stuck server cannot pile up
# threads tick after tick.
_ABANDONED: dict[str, threading.Thread] = {}
_ABANDONED_LOCK = threading.Lock()


class OrgWorker:
    """One org's pass in its own thread, with what is needed to abandon it from outside."""

    def __init__(self, run: Callable[[OrgWorker], AckPassSummary], org_id: str) -> None:
        self.org_id = org_id
        self.abandoned = threading.Event()
        self.summary: AckPassSummary | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._session: DropzoneSession | None = None
        self._run = run
        self.thread = threading.Thread(target=self._main, name=f"ack-pass-{org_id}", daemon=True)

    def _main(self) -> None:
        try:
            self.summary = self._run(self)
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
            self.error = exc
        finally:
            with _ABANDONED_LOCK:
                if _ABANDONED.get(self.org_id) is self.thread:
                    del _ABANDONED[self.org_id]

    def using(self, session: DropzoneSession) -> None:
        """Record the session in use; one opened after the worker was abandoned is aborted."""
        with self._lock:
            self._session = session
            late = self.abandoned.is_set()
        if late:
            _abort(session)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned.set()
            session = self._session
        if session is not None:
            _abort(session)
        with _ABANDONED_LOCK:
            if self.thread.is_alive():
                _ABANDONED[self.org_id] = self.thread


def _abort(session: DropzoneSession) -> None:
    # Only SFTP sessions can hang on a peer; a local session has nothing to abort.
    abort = getattr(session, "abort", None)
    if callable(abort):
        try:
            abort()
        except Exception:  # noqa: BLE001 - the session is being given up anyway
            _log.debug("aborting a dropzone session failed", exc_info=True)


def still_busy(org_id: str) -> bool:
    """Whether a pass of the org abandoned earlier has not ended yet."""
    with _ABANDONED_LOCK:
        thread = _ABANDONED.get(org_id)
        if thread is not None and not thread.is_alive():
            del _ABANDONED[org_id]
            return False
        return thread is not None
