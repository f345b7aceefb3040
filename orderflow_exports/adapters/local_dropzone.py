"""The dropzone on a local (or locally mounted) folder."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from orderflow_exports.domain.errors import ExportError
from orderflow_exports.domain.naming import is_our_temp_file, temp_filename

_COPY_CHUNK = 1024 * 1024
_SENDFILE_CHUNK = 64 * 1024 * 1024
# sendfile() refusing this pair of files (not the data): the plain copy works everywhere.
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOTSOCK}


def classify_os_error(exc: OSError, action: str) -> ExportError:
    """Map an OSError onto the export error codes."""
    message = f"{action}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExportError(ExportError.DISK_FULL, message, transient=False)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(ExportError.PERMISSION, message, transient=False)
    if exc.errno == errno.EEXIST:
        return ExportError(ExportError.NAME_EXISTS, message, transient=False)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ExportError(ExportError.CONFIG, message, transient=False)
    return ExportError(ExportError.IO, message, transient=True)


def _remove_quietly(path: Path) -> None:
    """Best-effort cleanup: the error that brought us here matters more than this one."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(src: BinaryIO, out: BinaryIO) -> None:
    """Copy all of ``src`` into ``out``: in the kernel (sendfile) where it can, else in chunks.

    A 100 MB export then never passes through Python buffers on its way to the dropzone.
    """
    if not hasattr(os, "sendfile"):
        shutil.copyfileobj(src, out, _COPY_CHUNK)
        return
    in_fd, out_fd = src.fileno(), out.fileno()
    offset = 0
    while True:
        try:
            sent = os.sendfile(out_fd, in_fd, offset, _SENDFILE_CHUNK)
        except OSError as exc:
            if offset == 0 and exc.errno in _NO_SENDFILE:
                shutil.copyfileobj(src, out, _COPY_CHUNK)
                return
            raise
        if sent == 0:
            return
        offset += sent


def _link_no_replace(source: Path, target: Path) -> None:
    """Give ``source`` the name ``target``; fails with EEXIST instead of replacing."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # No hard links on this file system: check, then rename (a narrow race, documented).
        if target.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from exc
        os.rename(source, target)
        return
    os.unlink(source)


class LocalDropzoneSession:
    """``DropzoneSession`` on the local file system: temp file, fsync, size check, no-replace."""

    def publish(
        self,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        directory = Path(folder)
        final = directory / final_name
        temp = directory / temp_filename(final_name)
        if not directory.is_dir():
            raise ExportError(
                ExportError.CONFIG, f"export folder {directory} does not exist", transient=False
            )
        if final.exists():
            raise ExportError(
                ExportError.NAME_EXISTS,
                f"{final} already exists; not replacing it",
                transient=False,
            )
        try:
            try:
                self._write_temp(source, temp, expected_size)
                if before_rename is not None:
                    before_rename()  # raises when this export is no longer ours: no rename
                try:
                    _link_no_replace(temp, final)
                except FileNotFoundError as exc:
                    # Our temp file was taken away after it was written (a reconciler fencing
                    # off a stalled run): there is nothing of ours left to give the final name.
                    raise ExportError(
                        ExportError.INTERRUPTED,
                        f"{temp} was removed before its rename to {final}; not publishing it",
                        transient=True,
                    ) from exc
                _fsync_dir(directory)
            except OSError as exc:
                raise classify_os_error(exc, f"writing {final}") from exc
        finally:
            # The rename is one system call with a definite answer: whatever happened, the temp
            # name is no longer needed (after a rename it is already gone).
            _remove_quietly(temp)
        return str(final)

    def remove_temp(self, folder: str, final_name: str) -> bool:
        temp = Path(folder) / temp_filename(final_name)
        try:
            temp.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise classify_os_error(exc, f"removing {temp}") from exc
        return True

    @staticmethod
    def _write_temp(source: Path, temp: Path, expected_size: int) -> None:
        _remove_quietly(temp)  # a leftover of this very export from a crashed run
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            _copy_file(src, out)
            out.flush()
            os.fsync(out.fileno())
            written = os.fstat(out.fileno()).st_size
        if written != expected_size:
            raise ExportError(
                ExportError.SIZE_MISMATCH,
                f"{temp} has {written} bytes, expected {expected_size}",
                transient=True,
            )

    def exists(self, folder: str, name: str) -> bool:
        return (Path(folder) / name).exists()

    def sweep_stale_temps(self, folder: str, older_than: timedelta) -> list[str]:
        directory = Path(folder)
        if not directory.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed = []
        for entry in os.scandir(directory):
            if (
                is_our_temp_file(entry.name)
                and entry.is_file(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
            ):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
        return sorted(removed)

    def list_files(self, folder: str) -> list[str]:
        directory = Path(folder)
        if not directory.is_dir():
            return []
        return sorted(
            entry.name for entry in os.scandir(directory) if entry.is_file(follow_symlinks=False)
        )

    def read_file(self, folder: str, name: str, max_bytes: int) -> bytes:
        path = Path(folder) / name
        try:
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise classify_os_error(exc, f"reading {path}") from exc
        if len(data) > max_bytes:
            raise ExportError(
                ExportError.IO, f"{path} is larger than {max_bytes} bytes", transient=False
            )
        return data

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        source = Path(folder) / name
        target_dir = Path(folder) / subfolder
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / name
        if not source.exists() and target.exists():
            return str(target)  # moved by an earlier, interrupted pass
        counter = 0
        while True:
            try:
                _link_no_replace(source, target)
                break
            except FileExistsError:
                counter += 1
                target = target_dir / f"{name}.{counter}"
        _fsync_dir(target_dir)
        return str(target)

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        directory = Path(folder)
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / name
        temp = directory / temp_filename(name)
        try:
            temp.write_bytes(data)
            os.replace(temp, final)
        finally:
            _remove_quietly(temp)
        return str(final)

    def close(self) -> None:
        """Nothing to release for local folders."""
