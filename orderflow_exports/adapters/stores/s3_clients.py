"""boto3 S3 clients shared per run: one client for every holder of the same key in a process.

Dagster initialises a nested resource separately from the top-level one it was configured from,
so in one run the ``export_json`` asset and the export-store IO manager each get their own
``ExportStoreResource``. ``S3Resource.get_client()`` builds a new client on every call (~170 ms
with dagster-aws 0.29), and a client is thread-safe, so both borrow the same one from this
registry: the first ``acquire`` of a key builds it, the last ``release`` closes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class SharedClients:
    """Reference-counted clients by key (a run id); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Any, int]] = {}

    def acquire(self, key: str, build: Callable[[], Any]) -> tuple[Any, bool]:
        """The client of ``key`` and whether this call built it (``build()`` runs at most once)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                client, holders = entry
                self._entries[key] = (client, holders + 1)
                return client, False
            client = build()
            self._entries[key] = (client, 1)
            return client, True

    def release(self, key: str) -> None:
        """Give back one hold on ``key``'s client; the last one closes it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            client, holders = entry
            if holders > 1:
                self._entries[key] = (client, holders - 1)
                return
            del self._entries[key]
        close = getattr(client, "close", None)
        if callable(close):
            close()

    def holders(self, key: str) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return 0 if entry is None else entry[1]
