"""A watchdog that closes a connection when the operation in progress stops making progress."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Watchdog:
    """Closes a connection when the operation in progress shows no progress for its timeout.

    paramiko honours timeouts only in some places: invoking the sftp subsystem waits without one,
    and a send into a full socket buffer (a black-holed peer) is retried forever. Closing the
    transport wakes every such wait with an error, which the session reports as TIMEOUT.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._action: Callable[[], None] | None = None
        self._seconds = 0.0
        self._last = 0.0
        self._stopped = False
        self._idle = False
        self._thread: threading.Thread | None = None
        self.fired = False
        self._aborted = False

    def abort(self) -> None:
        """Fire the armed action now, and every action armed from now on at once."""
        with self._cond:
            self._aborted = True
            action, self._action = self._action, None
            if action is not None:
                self.fired = True
        if action is not None:
            with contextlib.suppress(Exception):
                action()

    def arm(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` once ``seconds`` pass without a :meth:`touch`."""
        if self._aborted:
            self.fired = True
            with contextlib.suppress(Exception):
                action()
            return
        with self._cond:
            sooner = seconds < self._seconds
            self._seconds, self._action = seconds, action
            self._last = time.monotonic()
            self.fired = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sftp-watchdog", daemon=True)
                self._thread.start()
            elif self._idle or sooner:
                # Woken only when it sleeps without a deadline or the new one is sooner: a wake-up
                # per operation would cost a thread switch per file.
                self._cond.notify()

    def touch(self) -> None:
        """Record progress."""
        # A plain store: called for every reply, so it must stay cheap and lock-free.
        self._last = time.monotonic()

    def disarm(self) -> None:
        with self._cond:
            self._action = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._action = None
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                if self._action is None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                remaining = self._last + self._seconds - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                action, self._action = self._action, None
                self.fired = True
            try:
                action()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is dead
                log.debug("closing a stalled SFTP connection failed", exc_info=True)
