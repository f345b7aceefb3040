"""One SFTP connection kept for a whole run, and operations run on it one at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import paramiko
from paramiko.sftp import SFTP_NO_SUCH_FILE

from orderflow_exports.adapters.local_dropzone import classify_os_error
from orderflow_exports.adapters.sftp.connect import open_connection
from orderflow_exports.adapters.sftp.connection import SftpConnection
from orderflow_exports.adapters.sftp.host_keys import parse_host_keys
from orderflow_exports.adapters.sftp.protocol import SftpStatusError
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sftp.watchdog import Watchdog
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.records import ConnectorConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConnectionRunner:
    """Runs operations one at a time (a lock) on one connection, reconnecting when it died.

    When the connection has died, the next operation reconnects; when it dies during an
    operation, that operation is repeated once on a new connection. A timeout is not repeated:
    the connection is closed and the next operation reconnects. Temp files a failed operation
    could not remove (its connection was gone) are removed after the next connect.
    """

    def __init__(self, config: ConnectorConfig, settings: SftpSettings) -> None:
        if config.transport != "sftp" or not config.host or not config.username:
            raise ExportError(
                ErrorCode.CONFIG,
                f"connector of {config.org_id} is not an sftp connector with host and username",
                transient=False,
            )
        self._config = config
        self._settings = settings
        self._where = f"{config.username}@{config.host}:{config.port or 22}"
        try:
            self._pins = parse_host_keys(config.host_key)
        except ValueError as exc:
            raise ExportError(
                ErrorCode.CONFIG, f"host_key of {config.org_id}: {exc}", transient=False
            ) from None
        self._watchdog = Watchdog()
        self._lock = threading.RLock()
        self._conn: SftpConnection | None = None
        # Temp files a failed publish could not remove because its connection was gone.
        self._orphans: set[str] = set()
        self._closed = False

    @property
    def endpoint(self) -> str:
        return self._where

    # connecting

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first operation)."""
        with self._lock:
            if self._conn is None or not self._conn.alive():
                self._reconnect("connecting")

    def _reconnect(self, action: str) -> SftpConnection:
        if self._closed:
            raise ExportError(ErrorCode.CONFIG, "the SFTP session is closed", transient=False)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        conn = open_connection(
            self._config, self._settings, self._pins, self._watchdog, self._where
        )
        self._conn = conn
        if self._orphans:
            self._remove_orphans(conn)
        return conn

    def _run(self, action: str, operation: Callable[[SftpConnection], T]) -> T:
        """Run ``operation`` on a live connection; classify what goes wrong as ExportError."""
        reconnected = False
        if self._conn is None or not self._conn.alive():
            self._reconnect(action)
            reconnected = True
        while True:
            conn = self._conn
            assert conn is not None
            self._watchdog.arm(self._settings.operation_timeout, conn.close)
            try:
                return operation(conn)
            except ExportError:
                raise
            except Exception as exc:
                error = self._classify(exc, action, conn)
                if error.code == ErrorCode.CONNECTION and not reconnected:
                    log.warning(
                        "%s: connection to %s lost (%s); reconnecting once",
                        action,
                        self._where,
                        exc,
                    )
                    self._reconnect(action)
                    reconnected = True
                    continue
                if not isinstance(exc, SftpStatusError):
                    # Only a status reply leaves the stream in step; after a timeout, a lost
                    # connection or a garbled reply, the next operation starts afresh.
                    conn.close()
                    self._conn = None
                raise error from exc
            except BaseException:
                # Interrupted (e.g. the run was terminated): requests may be in flight.
                conn.close()
                self._conn = None
                raise
            finally:
                self._watchdog.disarm()

    def _classify(self, exc: Exception, action: str, conn: SftpConnection) -> ExportError:
        if self._watchdog.fired or isinstance(exc, TimeoutError):
            return ExportError(
                ErrorCode.TIMEOUT,
                f"{action}: no progress from {self._where} within "
                f"{self._settings.operation_timeout:g} s",
                transient=True,
            )
        if isinstance(exc, SftpStatusError):
            return classify_os_error(exc, f"{action} on {self._where}")
        if not conn.alive() or isinstance(exc, EOFError | OSError | paramiko.SSHException):
            return ExportError(
                ErrorCode.CONNECTION,
                f"{action}: connection to {self._where} lost ({exc or type(exc).__name__})",
                transient=True,
            )
        return ExportError(ErrorCode.IO, f"{action} on {self._where}: {exc}", transient=True)

    def _discard_temp(self, path: str) -> None:
        """Best-effort removal of a temp file after a failed publish."""
        conn = self._conn
        if conn is None or not conn.alive():
            self._orphans.add(path)
            log.warning(
                "%s left on %s; removed after reconnecting or by the sweep", path, self._where
            )
            return
        self._watchdog.arm(self._settings.operation_timeout, conn.close)
        try:
            conn.remove(path)
        except SftpStatusError as exc:
            if exc.sftp_code != SFTP_NO_SUCH_FILE:
                log.warning("could not remove %s on %s: %s", path, self._where, exc)
        except Exception as exc:  # noqa: BLE001 - best effort; the sweep removes it later
            log.warning("could not remove %s on %s: %s", path, self._where, exc)
            conn.close()
            self._conn = None
            self._orphans.add(path)
        finally:
            self._watchdog.disarm()

    def _remove_orphans(self, conn: SftpConnection) -> None:
        orphans, self._orphans = sorted(self._orphans), set()
        self._watchdog.arm(self._settings.operation_timeout, conn.close)
        try:
            for path in orphans:
                try:
                    conn.remove(path)
                    log.info("removed %s, left by a publish cut off earlier", path)
                except SftpStatusError:
                    pass  # already gone, or not ours to remove: the sweep decides later
        except Exception as exc:  # noqa: BLE001 - best effort
            log.warning("removing leftover temp files on %s failed: %s", self._where, exc)
        finally:
            self._watchdog.disarm()

    def abort(self) -> None:
        """Close the connection from another thread, without waiting for the operation in progress.

        The blocked operation then fails at once (TIMEOUT), and this session never reconnects.
        Used when a caller's deadline has passed; :meth:`close` would wait for the lock.
        """
        self._closed = True
        self._watchdog.abort()
        conn = self._conn
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                if self._orphans and conn.alive():
                    self._remove_orphans(conn)
                conn.close()
            self._watchdog.stop()
