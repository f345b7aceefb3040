"""Folders on the server: their entries, the checks before one is used, the ack-folder moves.

A server that sends no permissions still sends an ``ls -l`` style long name, so the kind of an
entry falls back to the long name's first letter.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import stat
from collections.abc import Generator

from paramiko.sftp import CMD_LSTAT, SFTP_FLAG_READ, SFTP_NO_SUCH_FILE
from paramiko.sftp_attr import SFTPAttributes

from orderflow_exports.adapters.sftp.connection import FolderTooLarge, SftpConnection
from orderflow_exports.adapters.sftp.protocol import SftpStatusError, attrs_or_none
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import is_our_temp_file
from orderflow_exports.domain.ports import FolderEntry, NotARegularFile

log = logging.getLogger(__name__)


def join(folder: str, name: str) -> str:
    """``folder/name`` on the server; ``name`` alone for the login folder."""
    return posixpath.join(folder, name) if folder else name


def _longname(attrs: SFTPAttributes | None) -> str:
    return str(getattr(attrs, "longname", "") or "")


def is_file(entry: SFTPAttributes) -> bool:
    if entry.st_mode is not None:
        return stat.S_ISREG(entry.st_mode)
    return _longname(entry).startswith("-")


def kind_of(mode: int | None, longname: str) -> str:
    if mode is None:
        return {"-": "file", "d": "dir", "l": "symlink", "p": "fifo"}.get(longname[:1], "other")
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "other"


def folder_entry(attrs: SFTPAttributes) -> FolderEntry:
    kind = kind_of(attrs.st_mode, _longname(attrs))
    mtime = float(attrs.st_mtime) if attrs.st_mtime is not None else None
    size = attrs.st_size if kind == "file" else None
    return FolderEntry(attrs.filename, kind, size, mtime)  # type: ignore[arg-type]


def require_regular(attrs: SFTPAttributes, path: str) -> None:
    kind = kind_of(attrs.st_mode, _longname(attrs))
    if kind != "file":
        found = {"symlink": "a symbolic link", "dir": "a folder", "fifo": "a FIFO"}
        raise NotARegularFile(path, found.get(kind, "a socket or device"))


def same_file(a: SFTPAttributes, b: SFTPAttributes) -> bool:
    """As close to "same inode" as SFTP v3 gets: type, size, times and owner all equal."""
    return (a.st_mode, a.st_size, a.st_mtime, a.st_uid, a.st_gid) == (
        b.st_mode,
        b.st_size,
        b.st_mtime,
        b.st_uid,
        b.st_gid,
    )


def ensure_real_dir(conn: SftpConnection, folder: str) -> None:
    """Create ``folder`` when missing; refuse it when it is a symlink or not a folder."""
    attrs = conn.lstat(folder)
    if attrs is None:
        try:
            conn.mkdir(folder)
        except SftpStatusError:
            if conn.lstat(folder) is None:  # not created by someone else meanwhile
                raise
        attrs = conn.lstat(folder)
    kind = kind_of(attrs.st_mode if attrs else None, _longname(attrs))
    if attrs is None or kind != "dir":
        raise ExportError(
            ErrorCode.CONFIG,
            f"{folder} is not a real folder ({kind}); refusing to use it",
            transient=False,
        )


def iter_listdir_or_empty(
    conn: SftpConnection, folder: str
) -> Generator[SFTPAttributes, None, None]:
    """The entries of ``folder``; none when it does not exist."""
    listing = conn.iter_listdir(folder)
    try:
        yield from listing
    except SftpStatusError as exc:
        if exc.sftp_code != SFTP_NO_SUCH_FILE:
            raise
    finally:
        listing.close()


def makedirs(conn: SftpConnection, folder: str) -> None:
    """Create ``folder`` and missing parents (no-op when it exists)."""
    if not folder:
        return
    attrs = conn.stat(folder)
    if attrs is not None:
        if attrs.st_mode is not None and not stat.S_ISDIR(attrs.st_mode):
            raise ExportError(ErrorCode.CONFIG, f"{folder} is not a folder", transient=False)
        return
    parent = posixpath.dirname(folder.rstrip("/"))
    if parent and parent != folder:
        makedirs(conn, parent)
    try:
        conn.mkdir(folder)
    except SftpStatusError:
        if conn.stat(folder) is None:  # not created by someone else meanwhile
            raise


# --- the operations on folders, run by the session on its connection -----------------------------

_MAX_NAME_SUFFIX = 1000


def list_folder(
    conn: SftpConnection, folder: str, max_entries: int, where: str
) -> list[SFTPAttributes]:
    """The entries of ``folder``; ExportError when it is too large (IO) or missing (CONFIG)."""
    try:
        return conn.listdir(folder, max_entries)
    except FolderTooLarge as exc:
        raise ExportError(
            ErrorCode.IO,
            f"folder {folder} on {where} has more than {exc.limit} entries; "
            "not reading it (fewer files there, or a higher max_listing_entries)",
            transient=False,
        ) from None
    except SftpStatusError as exc:
        if exc.sftp_code == SFTP_NO_SUCH_FILE:
            raise ExportError(
                ErrorCode.CONFIG,
                f"folder {folder} does not exist on {where}",
                transient=False,
            ) from exc
        raise


def stale_temp_names(
    conn: SftpConnection, folder: str, cutoff: float, max_entries: int, where: str
) -> list[str]:
    """Our temp files in ``folder`` modified before ``cutoff``, among its first entries."""
    stale = []
    with contextlib.closing(iter_listdir_or_empty(conn, folder)) as listing:
        for seen, entry in enumerate(listing, start=1):
            if seen > max_entries:
                # Only tidiness: a huge folder must not fail the export that sweeps it.
                log.warning(
                    "%s on %s has more than %d entries; swept only the first ones",
                    folder,
                    where,
                    max_entries,
                )
                break
            if not (is_our_temp_file(entry.filename) and is_file(entry)):
                continue
            if entry.st_mtime is None or entry.st_mtime >= cutoff:
                continue
            stale.append(entry.filename)
    return stale


def read_regular_file(conn: SftpConnection, path: str, max_bytes: int) -> bytes | None:
    """The bytes of the regular file ``path``; None when there are more than ``max_bytes``."""
    # SFTP cannot open without following symlinks: the name is lstat-ed before and after
    # the open and the open handle fstat-ed; all three must be the same regular file.
    before = conn.lstat(path)
    if before is None:
        raise SftpStatusError(SFTP_NO_SUCH_FILE, "No such file", path)
    require_regular(before, path)
    handle = conn.open(path, SFTP_FLAG_READ)
    try:
        opened = conn.fstat(handle, path)
        require_regular(opened, path)
        after = conn.lstat(path)
        if after is None or not (same_file(before, opened) and same_file(before, after)):
            raise NotARegularFile(path, "replaced while it was opened")
        return conn.read_handle(handle, path, opened.st_size, max_bytes)
    finally:
        conn.close_quietly(handle)


def move_into(conn: SftpConnection, folder: str, name: str, subfolder: str, where: str) -> str:
    """Move ``folder/name`` into ``folder/subfolder/``, never over a file; the new path.

    A taken name gets a ``.N`` suffix. A file already moved by an earlier, interrupted pass is
    found where it went.
    """
    source = join(folder, name)
    target_dir = join(folder, subfolder)
    ensure_real_dir(conn, target_dir)
    target = join(target_dir, name)
    source_num = conn.send(CMD_LSTAT, source)
    target_num = conn.send(CMD_LSTAT, target)
    source_attrs = attrs_or_none(conn.reply(source_num), source)
    target_attrs = attrs_or_none(conn.reply(target_num), target)
    if source_attrs is None:
        if target_attrs is not None:
            return target  # moved by an earlier, interrupted pass
        raise ExportError(
            ErrorCode.IO,
            f"{source} is not on {where} (nor in {subfolder}/)",
            transient=False,
        )
    for counter in range(1, _MAX_NAME_SUFFIX + 1):
        if conn.rename_no_replace(source, target):
            return target
        target = join(target_dir, f"{name}.{counter}")
    raise ExportError(
        ErrorCode.NAME_EXISTS,
        f"{_MAX_NAME_SUFFIX} files named {name}(.N) already in {target_dir}",
        transient=False,
    )
