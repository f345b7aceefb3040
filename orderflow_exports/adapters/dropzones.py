"""Opens dropzone sessions per connector config: one per endpoint, reused for a whole run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.domain.endpoints import login_key
from orderflow_exports.domain.ports import DropzoneSession
from orderflow_exports.domain.records import ConnectorConfig


class PooledDropzoneConnector:
    """The ``DropzoneConnector`` port: local folders, or SFTP with one session per login
    (server and credentials), reused until it breaks or the connector is closed."""

    def __init__(self, sftp_settings_factory: Callable[[], Any] | None = None) -> None:
        self._sftp_settings_factory = sftp_settings_factory
        self._local = LocalDropzoneSession()
        self._sessions: dict[str, DropzoneSession] = {}

    def session_for(self, config: ConnectorConfig) -> DropzoneSession:
        if config.transport == "local":
            return self._local
        key = login_key(config)
        session = self._sessions.get(key)
        if session is None:
            # Imported here so that the local-only path never loads paramiko.
            from orderflow_exports.adapters.sftp.session import open_sftp_session
            from orderflow_exports.adapters.sftp.settings import SftpSettings

            factory = self._sftp_settings_factory or SftpSettings
            settings = factory()
            session = open_sftp_session(config, settings)
            self._sessions[key] = session
        return session

    def discard(self, config: ConnectorConfig) -> None:
        if config.transport == "local":
            return
        session = self._sessions.pop(login_key(config), None)
        if session is not None:
            # A broken session may fail to close; it is gone anyway.
            with contextlib.suppress(Exception):
                session.close()

    def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()
