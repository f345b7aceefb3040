"""The dropzone on a local (or locally mounted) folder."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    is_our_temp_file,
    temp_filename,
)
from orderflow_exports.domain.ports import FolderEntry, NotARegularFile

#: Entries a folder listing may have before the folder is refused as too large (both dropzones).
DEFAULT_MAX_LISTING_ENTRIES = 10_000
_COPY_CHUNK = 1024 * 1024
_SENDFILE_CHUNK = 64 * 1024 * 1024
# sendfile() refusing this pair of files (not the data): the plain copy works everywhere.
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOTSOCK}


def classify_os_error(exc: OSError, action: str) -> ExportError:
    """Map an OSError onto the export error codes."""
    message = f"{action}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExportError(ErrorCode.DISK_FULL, message, transient=False)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(ErrorCode.PERMISSION, message, transient=False)
    if exc.errno == errno.EEXIST:
        return ExportError(ErrorCode.NAME_EXISTS, message, transient=False)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ExportError(ErrorCode.CONFIG, message, transient=False)
    return ExportError(ErrorCode.IO, message, transient=True)


def final_name_of_temp(temp_name: str) -> str:
    """The final name a temp file of ours stands for (the inverse of ``temp_filename``)."""
    return temp_name[len(TEMP_PREFIX) : len(temp_name) - len(TEMP_SUFFIX)]


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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal never becomes ours.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_MAX_NAME_SUFFIX = 1000


def _describe_mode(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket or device"


def _entry_of(entry: os.DirEntry[str]) -> FolderEntry | None:
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None  # removed while listing
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return FolderEntry(entry.name, "file", info.st_size, info.st_mtime)
    kind = (
        "symlink"
        if stat.S_ISLNK(mode)
        else "dir"
        if stat.S_ISDIR(mode)
        else "fifo"
        if stat.S_ISFIFO(mode)
        else "other"
    )
    return FolderEntry(entry.name, kind, None, info.st_mtime)  # type: ignore[arg-type]


def _folder_error(exc: OSError, folder: str) -> ExportError:
    if exc.errno == errno.ENOENT:
        return ExportError(ErrorCode.CONFIG, f"folder {folder} does not exist", transient=False)
    if exc.errno == errno.ENOTDIR:
        return ExportError(ErrorCode.CONFIG, f"{folder} is not a folder", transient=False)
    return classify_os_error(exc, f"listing {folder}")


def _check_name(name: str, folder: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ExportError(
            ErrorCode.CONFIG, f"{name!r} is not a plain file name in {folder}", transient=False
        )


def _open_real_subfolder(dir_fd: int, folder: str, subfolder: str) -> int:
    """An fd of ``folder/subfolder``, created when missing; a symlink there is refused.

    The fd is what later operations use, so the folder checked is the folder written to.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(subfolder, 0o755, dir_fd=dir_fd)
    where = os.path.join(folder, subfolder)
    try:
        fd = os.open(subfolder, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ExportError(
                ErrorCode.CONFIG,
                f"{where} is not a real folder (a symbolic link or a file); refusing to use it",
                transient=False,
            ) from exc
        raise classify_os_error(exc, f"opening {where}") from exc
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise ExportError(ErrorCode.CONFIG, f"{where} is not a folder", transient=False)
    return fd


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _link_into(dir_fd: int, sub_fd: int, name: str, folder: str, subfolder: str) -> str:
    """Give ``name`` a new name in the subfolder (never replacing one), then drop the old one."""
    if not _exists_at(dir_fd, name):
        if _exists_at(sub_fd, name):
            return name  # moved by an earlier, interrupted pass
        raise ExportError(
            ErrorCode.IO, f"{os.path.join(folder, name)} is not there", transient=False
        )
    for counter in range(_MAX_NAME_SUFFIX + 1):
        target = name if counter == 0 else f"{name}.{counter}"
        try:
            os.link(name, target, src_dir_fd=dir_fd, dst_dir_fd=sub_fd, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise classify_os_error(exc, f"moving {name} to {subfolder}/") from exc
            # No hard links here: check, then rename (a narrow race, as in publish).
            if _exists_at(sub_fd, target):
                continue
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=sub_fd)
            return target
        os.unlink(name, dir_fd=dir_fd)
        return target
    raise ExportError(
        ErrorCode.NAME_EXISTS,
        f"{_MAX_NAME_SUFFIX} files named {name}(.N) already in {os.path.join(folder, subfolder)}",
        transient=False,
    )


def _create_exclusive(dir_fd: int, name: str) -> int:
    """A new file ``name``; a leftover of ours (or anything planted there) is removed first.

    O_EXCL with O_CREAT never follows a symlink, so nothing is written through one.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        os.unlink(name, dir_fd=dir_fd)
        return os.open(name, flags, 0o644, dir_fd=dir_fd)


class LocalDropzoneSession:
    """``DropzoneSession`` on the local file system: temp file, fsync, size check, no-replace.

    ``max_listing_entries`` bounds a folder listing: a folder with more entries is reported as
    too large rather than read into memory.
    """

    def __init__(self, max_listing_entries: int = DEFAULT_MAX_LISTING_ENTRIES) -> None:
        if max_listing_entries < 1:
            raise ValueError("max_listing_entries must be at least 1")
        self._max_listing_entries = max_listing_entries

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
                ErrorCode.CONFIG, f"export folder {directory} does not exist", transient=False
            )
        if final.exists():
            raise ExportError(
                ErrorCode.NAME_EXISTS,
                f"{final} already exists; not replacing it",
                transient=False,
            )
        claimed = False
        try:
            try:
                self._write_temp(source, temp, expected_size)
                if before_rename is not None:
                    before_rename()  # raises when this export is no longer ours: no rename
                    claimed = True
                try:
                    _link_no_replace(temp, final)
                except FileNotFoundError as exc:
                    # Our temp file was taken away after it was written (a reconciler fencing
                    # off a stalled run): there is nothing of ours left to give the final name.
                    raise ExportError(
                        ErrorCode.INTERRUPTED,
                        f"{temp} was removed before its rename to {final}; not publishing it",
                        transient=True,
                    ) from exc
                _fsync_dir(directory)
            except OSError as exc:
                raise classify_os_error(exc, f"writing {final}") from exc
        finally:
            # Once the rename right is claimed, the caller settles a failure by the temp file:
            # still there means never renamed (it removes it and may try again), gone means the
            # rename may have happened. Removing it here would turn a refused rename into "sent".
            # After a successful rename the temp name is already gone.
            if not claimed:
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
                ErrorCode.SIZE_MISMATCH,
                f"{temp} has {written} bytes, expected {expected_size}",
                transient=True,
            )

    def exists(self, folder: str, name: str) -> bool:
        return (Path(folder) / name).exists()

    def sweep_stale_temps(
        self,
        folder: str,
        older_than: timedelta,
        keep: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """Remove our temp files older than ``older_than``; their names.

        ``keep`` is asked, with the final name a stale temp file stands for, whether to leave it:
        the temp file of a row whose rename right is taken is the evidence its settling needs.
        """
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
                and not (keep is not None and keep(final_name_of_temp(entry.name)))
            ):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
        return sorted(removed)

    def list_entries(self, folder: str) -> list[FolderEntry]:
        limit = self._max_listing_entries
        entries: list[FolderEntry] = []
        try:
            with os.scandir(folder) as scan:
                for dir_entry in scan:
                    entry = _entry_of(dir_entry)
                    if entry is None:
                        continue
                    if len(entries) >= limit:
                        raise ExportError(
                            ErrorCode.IO,
                            f"folder {folder} has more than {limit} entries; not reading it "
                            "(fewer files there, or a higher max_listing_entries)",
                            transient=False,
                        )
                    entries.append(entry)
        except OSError as exc:
            raise _folder_error(exc, folder) from exc
        return sorted(entries, key=lambda e: e.name)

    def list_files(self, folder: str) -> list[str]:
        return [entry.name for entry in self.list_entries(folder) if entry.kind == "file"]

    def read_file(self, folder: str, name: str, max_bytes: int) -> bytes:
        path = os.path.join(folder, name)
        _check_name(name, folder)
        try:
            dir_fd = os.open(folder, _DIR_FLAGS)
        except OSError as exc:
            raise classify_os_error(exc, f"opening {folder}") from exc
        try:
            # The opened file, not the path, is checked: a name swapped for a symlink or a FIFO
            # after the listing is refused without following it or blocking on it.
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise NotARegularFile(path, "a symbolic link") from exc
                if exc.errno == errno.ENXIO:
                    raise NotARegularFile(path, "a socket or device") from exc
                raise classify_os_error(exc, f"reading {path}") from exc
        finally:
            os.close(dir_fd)
        # Checked on the descriptor before wrapping it: Python refuses to wrap a folder's
        # descriptor (IsADirectoryError), which would hide what the name really is.
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise NotARegularFile(path, _describe_mode(mode))
        with os.fdopen(fd, "rb") as handle:
            try:
                data = handle.read(max_bytes + 1)
            except OSError as exc:
                raise classify_os_error(exc, f"reading {path}") from exc
        if len(data) > max_bytes:
            raise ExportError(
                ErrorCode.IO, f"{path} is larger than {max_bytes} bytes", transient=False
            )
        return data

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        _check_name(name, folder)
        _check_name(subfolder, folder)
        try:
            dir_fd = os.open(folder, _DIR_FLAGS)
        except OSError as exc:
            raise classify_os_error(exc, f"opening {folder}") from exc
        try:
            sub_fd = _open_real_subfolder(dir_fd, folder, subfolder)
            try:
                target = _link_into(dir_fd, sub_fd, name, folder, subfolder)
                os.fsync(sub_fd)
            finally:
                os.close(sub_fd)
        finally:
            os.close(dir_fd)
        return os.path.join(folder, subfolder, target)

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        parent, last = os.path.split(os.path.normpath(folder))
        _check_name(name, folder)
        try:
            os.makedirs(parent, exist_ok=True)
            parent_fd = os.open(parent, _DIR_FLAGS)
        except OSError as exc:
            raise classify_os_error(exc, f"opening {parent}") from exc
        try:
            dir_fd = _open_real_subfolder(parent_fd, parent, last)
        finally:
            os.close(parent_fd)
        temp = temp_filename(name)
        try:
            try:
                fd = _create_exclusive(dir_fd, temp)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                # rename() replaces a symlink at ``name`` itself; it never writes through it.
                os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise classify_os_error(exc, f"writing {os.path.join(folder, name)}") from exc
        finally:
            os.close(dir_fd)
        return os.path.join(folder, name)

    def close(self) -> None:
        """Nothing to release for local folders."""
