"""``FakeDropzone``: the dropzone ports over a dict of folders, with fault hooks per operation.

A fault hook is a callable run just before or just after one operation (see ``OPERATIONS``); when
it raises, the operation fails there. Raising before ``write_temp`` with DISK_FULL is a full disk,
before ``connect`` a refused login, after ``rename`` with ``RenameOutcomeUnknown`` a rename whose
reply was lost although it happened; a hook may also change the folders (``take`` a file, as the
ERP picking it up) to interleave another party with the code under test.
"""

from __future__ import annotations

import builtins
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from orderflow_exports.domain.endpoints import login_key
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    is_our_temp_file,
    temp_filename,
)
from orderflow_exports.domain.ports import EntryKind, FolderEntry, NotARegularFile
from orderflow_exports.domain.records import ConnectorConfig

OPERATIONS = frozenset(
    {
        "connect",
        "publish",
        "write_temp",
        "rename",
        "exists",
        "remove_temp",
        "sweep_stale_temps",
        "list_entries",
        "read_file",
        "move_file",
        "write_file",
    }
)
_MAX_NAME_SUFFIX = 1000
_DESCRIBED = {"symlink": "a symbolic link", "dir": "a folder", "fifo": "a FIFO"}

Hook = Callable[[str], None]
"""Called with the path (or, for ``connect``, the endpoint) the operation is about."""


@dataclass
class FakeNode:
    """One entry of a fake folder: a regular file with its bytes, or another kind of entry."""

    kind: EntryKind
    data: bytes = b""
    mtime: float = 0.0


def _norm(folder: str) -> str:
    return posixpath.normpath(folder)


def _check_name(name: str, folder: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ExportError(
            ErrorCode.CONFIG, f"{name!r} is not a plain file name in {folder}", transient=False
        )


class FakeDropzone:
    """``DropzoneConnector`` over in-memory folders; every session it opens shares them.

    ``clock`` gives the file server's time (seconds since the epoch) used as files' mtime and
    by the stale-temp sweep. ``connects`` lists every endpoint a session was opened for,
    ``discarded`` every endpoint whose session was dropped after it broke.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.folders: dict[str, dict[str, FakeNode]] = {}
        self.connects: builtins.list[str] = []
        self.discarded: builtins.list[str] = []
        self._hooks: dict[tuple[str, str], builtins.list[Hook]] = {}
        self._sessions: dict[str, FakeDropzoneSession] = {}
        self.lock = threading.RLock()

    # --- setting up and looking ----------------------------------------------------------------

    def make_folder(self, folder: str) -> str:
        """Create ``folder`` and its parents (each listed as a ``dir`` entry of its parent)."""
        path = _norm(folder)
        with self.lock:
            parent = posixpath.dirname(path)
            if parent and parent != path:
                self.make_folder(parent)
                self.folders[parent].setdefault(posixpath.basename(path), FakeNode("dir"))
            self.folders.setdefault(path, {})
        return path

    def put(self, folder: str, name: str, data: bytes, *, mtime: float | None = None) -> None:
        """Place a regular file (the folder is created when missing)."""
        with self.lock:
            files = self.folders[self.make_folder(folder)]
            files[name] = FakeNode("file", data, self.clock() if mtime is None else mtime)

    def plant(self, folder: str, name: str, kind: EntryKind) -> None:
        """Place an entry that is not a regular file (a symlink, a FIFO, ...)."""
        with self.lock:
            self.folders[self.make_folder(folder)][name] = FakeNode(kind, mtime=self.clock())

    def names(self, folder: str) -> builtins.list[str]:
        """Every name in ``folder``, temp files included; empty when it does not exist."""
        with self.lock:
            return sorted(self.folders.get(_norm(folder), {}))

    def data(self, folder: str, name: str) -> bytes:
        with self.lock:
            return self.folders[_norm(folder)][name].data

    def take(self, folder: str, name: str) -> bytes:
        """Remove a file as the ERP does when it picks one up; its bytes."""
        with self.lock:
            return self.folders[_norm(folder)].pop(name).data

    # --- faults --------------------------------------------------------------------------------

    def on(self, operation: str, hook: Hook, *, after: bool = False) -> None:
        """Run ``hook`` before (or after) every ``operation`` from now on."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown dropzone operation {operation!r}")
        phase = "after" if after else "before"
        with self.lock:
            self._hooks.setdefault((operation, phase), []).append(hook)

    def fail(
        self,
        operation: str,
        error: BaseException,
        *,
        after: bool = False,
        times: int | None = 1,
    ) -> None:
        """Make ``operation`` raise ``error`` (before or after it acts), ``times`` times
        (None: every time)."""
        left = [times]

        def hook(_: str) -> None:
            if left[0] is None:
                raise error
            if left[0] > 0:
                left[0] -= 1
                raise error

        self.on(operation, hook, after=after)

    def clear_faults(self) -> None:
        with self.lock:
            self._hooks.clear()

    def run_hooks(self, operation: str, phase: str, subject: str) -> None:
        with self.lock:
            hooks = builtins.list(self._hooks.get((operation, phase), ()))
        for hook in hooks:
            hook(subject)

    # --- DropzoneConnector ---------------------------------------------------------------------

    def session_for(self, config: ConnectorConfig) -> FakeDropzoneSession:
        key = login_key(config)
        with self.lock:
            session = self._sessions.get(key)
        if session is not None:
            return session
        self.run_hooks("connect", "before", config.endpoint)
        session = FakeDropzoneSession(self, config.endpoint)
        self.run_hooks("connect", "after", config.endpoint)
        with self.lock:
            self.connects.append(config.endpoint)
            return self._sessions.setdefault(key, session)

    def discard(self, config: ConnectorConfig) -> None:
        with self.lock:
            session = self._sessions.pop(login_key(config), None)
            self.discarded.append(config.endpoint)
        if session is not None:
            session.close()

    def close(self) -> None:
        with self.lock:
            sessions, self._sessions = builtins.list(self._sessions.values()), {}
        for session in sessions:
            session.close()


class FakeDropzoneSession:
    """``DropzoneSession`` on a :class:`FakeDropzone`'s folders, with the local dropzone's rules.

    Publishing writes ``.{name}.tmp``, checks its size, calls ``before_rename`` and renames
    without ever replacing a file; once ``before_rename`` has succeeded a failure leaves the temp
    file for the caller to settle, before it the temp file is removed.
    """

    def __init__(self, zone: FakeDropzone, endpoint: str = "local") -> None:
        self.zone = zone
        self.endpoint = endpoint
        self.closed = False

    def _folder(self, folder: str) -> dict[str, FakeNode] | None:
        return self.zone.folders.get(_norm(folder))

    def _require_folder(self, folder: str) -> dict[str, FakeNode]:
        files = self._folder(folder)
        if files is None:
            parent = self._folder(posixpath.dirname(_norm(folder)))
            node = None if parent is None else parent.get(posixpath.basename(_norm(folder)))
            why = "is not a folder" if node is not None else "does not exist"
            raise ExportError(ErrorCode.CONFIG, f"folder {folder} {why}", transient=False)
        return files

    def publish(
        self,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        final = posixpath.join(folder, final_name)
        temp = temp_filename(final_name)
        zone = self.zone
        zone.run_hooks("publish", "before", final)
        with zone.lock:
            files = self._folder(folder)
            if files is None:
                raise ExportError(
                    ErrorCode.CONFIG, f"export folder {folder} does not exist", transient=False
                )
            if final_name in files:
                raise ExportError(
                    ErrorCode.NAME_EXISTS,
                    f"{final} already exists; not replacing it",
                    transient=False,
                )
        claimed = False
        try:
            zone.run_hooks("write_temp", "before", final)
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise ExportError(
                    ErrorCode.IO, f"cannot read {source}: {exc.strerror or exc}", transient=False
                ) from exc
            with zone.lock:
                files[temp] = FakeNode("file", data, zone.clock())
            if len(data) != expected_size:
                raise ExportError(
                    ErrorCode.SIZE_MISMATCH,
                    f"{temp} has {len(data)} bytes, expected {expected_size}",
                    transient=True,
                )
            zone.run_hooks("write_temp", "after", final)
            if before_rename is not None:
                before_rename()  # raises when this export is no longer ours: no rename
                claimed = True
            zone.run_hooks("rename", "before", final)
            with zone.lock:
                if temp not in files:
                    raise ExportError(
                        ErrorCode.INTERRUPTED,
                        f"{temp} was removed before its rename to {final}; not publishing it",
                        transient=True,
                    )
                if final_name in files:
                    raise ExportError(
                        ErrorCode.NAME_EXISTS,
                        f"{final} appeared during the upload; not replacing it",
                        transient=False,
                    )
                files[final_name] = files.pop(temp)
            zone.run_hooks("rename", "after", final)
        finally:
            # Once the rename right is claimed the temp file is the caller's evidence.
            if not claimed:
                with zone.lock:
                    files.pop(temp, None)
        return final

    def exists(self, folder: str, name: str) -> bool:
        path = posixpath.join(folder, name)
        self.zone.run_hooks("exists", "before", path)
        with self.zone.lock:
            found = name in (self._folder(folder) or {})
        self.zone.run_hooks("exists", "after", path)
        return found

    def remove_temp(self, folder: str, final_name: str) -> bool:
        temp = temp_filename(final_name)
        path = posixpath.join(folder, temp)
        self.zone.run_hooks("remove_temp", "before", path)
        with self.zone.lock:
            files = self._folder(folder) or {}
            node = files.get(temp)
            removed = node is not None and node.kind == "file"
            if removed:
                del files[temp]
        self.zone.run_hooks("remove_temp", "after", path)
        return removed

    def sweep_stale_temps(
        self,
        folder: str,
        older_than: timedelta,
        keep: Callable[[str], bool] | None = None,
    ) -> builtins.list[str]:
        self.zone.run_hooks("sweep_stale_temps", "before", folder)
        cutoff = self.zone.clock() - older_than.total_seconds()
        with self.zone.lock:
            files = self._folder(folder) or {}
            stale = [
                name
                for name, node in files.items()
                if is_our_temp_file(name) and node.kind == "file" and node.mtime < cutoff
            ]
        if keep is not None:
            stale = [name for name in stale if not keep(name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)])]
        with self.zone.lock:
            removed = [name for name in stale if files.pop(name, None) is not None]
        self.zone.run_hooks("sweep_stale_temps", "after", folder)
        return sorted(removed)

    def list_entries(self, folder: str) -> builtins.list[FolderEntry]:
        self.zone.run_hooks("list_entries", "before", folder)
        with self.zone.lock:
            files = self._require_folder(folder)
            entries = [
                FolderEntry(
                    name, node.kind, len(node.data) if node.kind == "file" else None, node.mtime
                )
                for name, node in files.items()
            ]
        self.zone.run_hooks("list_entries", "after", folder)
        return sorted(entries, key=lambda e: e.name)

    def list_files(self, folder: str) -> builtins.list[str]:
        return [entry.name for entry in self.list_entries(folder) if entry.kind == "file"]

    def read_file(self, folder: str, name: str, max_bytes: int) -> bytes:
        path = posixpath.join(folder, name)
        _check_name(name, folder)
        self.zone.run_hooks("read_file", "before", path)
        with self.zone.lock:
            node = self._require_folder(folder).get(name)
            if node is None:
                raise ExportError(
                    ErrorCode.CONFIG, f"reading {path}: no such file", transient=False
                )
            if node.kind != "file":
                raise NotARegularFile(path, _DESCRIBED.get(node.kind, "a socket or device"))
            data = node.data
        if len(data) > max_bytes:
            raise ExportError(
                ErrorCode.IO, f"{path} is larger than {max_bytes} bytes", transient=False
            )
        self.zone.run_hooks("read_file", "after", path)
        return data

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        _check_name(name, folder)
        _check_name(subfolder, folder)
        source = posixpath.join(folder, name)
        self.zone.run_hooks("move_file", "before", source)
        with self.zone.lock:
            files = self._require_folder(folder)
            node = files.get(subfolder)
            if node is not None and node.kind != "dir":
                raise ExportError(
                    ErrorCode.CONFIG,
                    f"{posixpath.join(folder, subfolder)} is not a real folder (a symbolic link "
                    "or a file); refusing to use it",
                    transient=False,
                )
            target_files = self.zone.folders[
                self.zone.make_folder(posixpath.join(folder, subfolder))
            ]
            moved = self._move(files, target_files, name, folder, subfolder)
        self.zone.run_hooks("move_file", "after", source)
        return posixpath.join(folder, subfolder, moved)

    @staticmethod
    def _move(
        files: dict[str, FakeNode],
        target_files: dict[str, FakeNode],
        name: str,
        folder: str,
        subfolder: str,
    ) -> str:
        if name not in files:
            if name in target_files:
                return name  # moved by an earlier, interrupted pass
            raise ExportError(
                ErrorCode.IO, f"{posixpath.join(folder, name)} is not there", transient=False
            )
        for counter in range(_MAX_NAME_SUFFIX + 1):
            target = name if counter == 0 else f"{name}.{counter}"
            if target not in target_files:
                target_files[target] = files.pop(name)
                return target
        raise ExportError(
            ErrorCode.NAME_EXISTS,
            f"{_MAX_NAME_SUFFIX} files named {name}(.N) already in {folder}/{subfolder}",
            transient=False,
        )

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        _check_name(name, folder)
        path = posixpath.join(folder, name)
        self.zone.run_hooks("write_file", "before", path)
        with self.zone.lock:
            parent = self._folder(posixpath.dirname(_norm(folder)))
            node = None if parent is None else parent.get(posixpath.basename(_norm(folder)))
            if node is not None and node.kind != "dir":
                raise ExportError(
                    ErrorCode.CONFIG,
                    f"{folder} is not a real folder (a symbolic link or a file); refusing it",
                    transient=False,
                )
            files = self.zone.folders[self.zone.make_folder(folder)]
            files[name] = FakeNode("file", data, self.zone.clock())
        self.zone.run_hooks("write_file", "after", path)
        return path

    def close(self) -> None:
        self.closed = True
