"""One authenticated SSH transport with its SFTP channel: file requests and pipelined writes."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Generator, Iterable
from typing import IO, Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSTAT,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_REMOVE,
    CMD_RENAME,
    CMD_STAT,
    SFTP_EOF,
    SFTPError,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from orderflow_exports.adapters.sftp.protocol import (
    NO_ATTRS,
    SftpStatusError,
    SftpStream,
    attrs_or_none,
    handle_of,
    raise_for_status,
    read_attrs,
)
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sftp.watchdog import Watchdog
from orderflow_exports.domain.errors import ErrorCode, ExportError

log = logging.getLogger(__name__)

_READ_REQUEST_SIZE = 64 * 1024


class FolderTooLarge(Exception):
    """A folder listing went past its limit; it was stopped there and nothing of it is used."""

    def __init__(self, folder: str, limit: int) -> None:
        super().__init__(f"{folder} has more than {limit} entries")
        self.folder = folder
        self.limit = limit


class SftpConnection:
    """One authenticated SSH transport with its SFTP channel, and the requests sent on it."""

    def __init__(
        self,
        transport: paramiko.Transport,
        channel: paramiko.Channel,
        settings: SftpSettings,
        watchdog: Watchdog,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.stream = SftpStream(channel, watchdog.touch)
        extensions = self.stream.handshake()
        self.has_fsync = "fsync@openssh.com" in extensions
        self.has_posix_rename = "posix-rename@openssh.com" in extensions
        self.has_statvfs = "statvfs@openssh.com" in extensions
        # OpenSSH's sftp-server answers requests strictly in order, so a stat sent right after a
        # close sees the closed file: one round trip less per file. Other servers get it after.
        self.in_order = str(transport.remote_version).startswith("SSH-2.0-OpenSSH")
        self.write_size = settings.write_request_size
        if "limits@openssh.com" in extensions:
            t, msg = self.reply(self.send(CMD_EXTENDED, "limits@openssh.com"))
            if t == CMD_EXTENDED_REPLY:
                msg.get_int64()  # max-packet-length
                msg.get_int64()  # max-read-length
                max_write = msg.get_int64()
                if max_write > 0:
                    self.write_size = min(self.write_size, max_write)

    def alive(self) -> bool:
        return bool(self.transport.is_active() and not self.channel.closed)

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - it is being thrown away
            log.debug("closing an SFTP transport failed", exc_info=True)

    # requests and replies

    def send(self, t: int, *args: Any) -> int:
        return self.stream.send(t, *args)

    def reply(self, num: int) -> tuple[int, Message]:
        return self.stream.reply(num)

    def check(self, num: int, path: str) -> None:
        """Wait for a status reply; raise SftpStatusError unless it is OK."""
        t, msg = self.reply(num)
        raise_for_status(t, msg, path)

    def abandon(self, nums: Iterable[int | None]) -> None:
        """Forget requests whose replies no longer matter (after a failure)."""
        for num in nums:
            if num is not None:
                self.stream.abandon(num)

    # file operations

    def stat(self, path: str) -> SFTPAttributes | None:
        return attrs_or_none(self.reply(self.send(CMD_STAT, path)), path)

    def lstat(self, path: str) -> SFTPAttributes | None:
        return attrs_or_none(self.reply(self.send(CMD_LSTAT, path)), path)

    def fstat(self, handle: bytes, path: str) -> SFTPAttributes:
        t, msg = self.reply(self.send(CMD_FSTAT, handle))
        if t != CMD_ATTRS:
            raise_for_status(t, msg, path)
            raise SFTPError(f"unexpected reply {t} to an fstat of {path}")
        return read_attrs(msg)

    def read_handle(
        self, handle: bytes, path: str, size: int | None, max_bytes: int
    ) -> bytes | None:
        """The bytes behind an open ``handle``, or None when there are more than ``max_bytes``."""
        if size is not None and size > max_bytes:
            return None
        data = bytearray()
        while len(data) <= max_bytes:
            t, msg = self.reply(self.send(CMD_READ, handle, int64(len(data)), _READ_REQUEST_SIZE))
            if t == CMD_DATA:
                data += msg.get_binary()
                continue
            try:
                raise_for_status(t, msg, path)
            except SftpStatusError as exc:
                if exc.sftp_code == SFTP_EOF:
                    break
                raise
            raise SFTPError(f"unexpected reply {t} to a read of {path}")
        return bytes(data) if len(data) <= max_bytes else None

    def open(self, path: str, flags: int) -> bytes:
        return handle_of(self.reply(self.send(CMD_OPEN, path, flags, NO_ATTRS)), path)

    def close_quietly(self, handle: bytes) -> None:
        """Close ``handle`` without waiting; the request goes out with the next one."""
        self.abandon([self.send(CMD_CLOSE, handle)])

    def remove(self, path: str) -> None:
        self.check(self.send(CMD_REMOVE, path), path)

    def rename(self, source: str, target: str) -> None:
        self.check(self.send(CMD_RENAME, source, target), target)

    def posix_rename(self, source: str, target: str) -> None:
        self.check(self.send(CMD_EXTENDED, "posix-rename@openssh.com", source, target), target)

    def rename_no_replace(self, source: str, target: str) -> bool:
        """Rename without replacing; False when ``target`` exists."""
        try:
            self.rename(source, target)
            return True
        except SftpStatusError:
            # OpenSSH refuses a plain rename onto an existing name; some servers refuse plain
            # renames altogether. posix-rename replaces, so it is used only once the name is free.
            if self.stat(target) is not None:
                return False
            if not self.has_posix_rename:
                raise
        self.posix_rename(source, target)
        return True

    def mkdir(self, path: str) -> None:
        self.check(self.send(CMD_MKDIR, path, NO_ATTRS), path)

    def free_bytes(self, path: str) -> int | None:
        """Bytes available to us on the file system of ``path`` (``statvfs@openssh.com``)."""
        if not self.has_statvfs:
            return None
        t, msg = self.reply(self.send(CMD_EXTENDED, "statvfs@openssh.com", path))
        if t != CMD_EXTENDED_REPLY:
            return None
        _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
        return int(frsize * bavail)

    def iter_listdir(self, folder: str) -> Generator[SFTPAttributes, None, None]:
        """The entries of ``folder`` (without ``.`` and ``..``), one READDIR reply at a time.

        Nothing is collected here, so a caller that stops early holds no more than one reply;
        closing the iterator releases the folder handle.
        """
        handle = handle_of(self.reply(self.send(CMD_OPENDIR, folder)), folder)
        try:
            while True:
                t, msg = self.reply(self.send(CMD_READDIR, handle))
                if t != CMD_NAME:
                    try:
                        raise_for_status(t, msg, folder)
                    except SftpStatusError as exc:
                        if exc.sftp_code == SFTP_EOF:
                            return
                        raise
                    raise SFTPError(f"unexpected reply {t} to a listing of {folder}")
                # The count is the server's word: a reply may claim billions of entries, so each
                # one is handed on as it is parsed, never gathered first.
                for _ in range(msg.get_int()):
                    filename = msg.get_text()
                    longname = msg.get_text()
                    entry = read_attrs(msg, filename, longname)
                    if filename not in (".", ".."):
                        yield entry
        finally:
            self.close_quietly(handle)

    def listdir(self, folder: str, max_entries: int) -> list[SFTPAttributes]:
        """The entries of ``folder``; FolderTooLarge once there are more than ``max_entries``."""
        entries: list[SFTPAttributes] = []
        with contextlib.closing(self.iter_listdir(folder)) as listing:
            for entry in listing:
                if len(entries) >= max_entries:
                    raise FolderTooLarge(folder, max_entries)
                entries.append(entry)
        return entries

    # pipelined writes

    def write_and_close(
        self,
        handle: bytes,
        path: str,
        reader: IO[bytes],
        expected_size: int,
        *,
        max_outstanding: int,
        fsync: bool,
    ) -> SFTPAttributes | None:
        """Write ``reader`` to the open ``handle``, flush, close; the file's attrs after the close.

        Up to ``max_outstanding`` write requests are in flight, and the reply to every one of them
        is read and checked: paramiko's ``SFTPFile`` drops the error replies of pipelined writes
        (a failed write is not reported), which is why this layer exists. ``fsync`` asks for
        ``fsync@openssh.com`` when the server offers it. Returns None when the file is gone
        after its close. The handle is closed in every case.
        """
        pending: deque[int] = deque()
        tail: list[int | None] = []
        closed = False
        try:
            offset = 0
            size = self.write_size
            while chunk := read_local(reader, size, path):
                pending.append(self.stream.send_write(handle, offset, chunk))
                offset += len(chunk)
                while len(pending) >= max_outstanding:
                    self.check(pending.popleft(), path)
            if offset != expected_size:
                raise ExportError(
                    ErrorCode.SIZE_MISMATCH,
                    f"the local file for {path} has {offset} bytes, expected {expected_size}",
                    transient=False,
                )
            fsync_num = None
            if fsync and self.has_fsync:
                fsync_num = self.send(CMD_EXTENDED, "fsync@openssh.com", handle)
            close_num = self.send(CMD_CLOSE, handle)
            closed = True
            stat_num = self.send(CMD_STAT, path) if self.in_order else None
            tail = [fsync_num, close_num, stat_num]
            while pending:
                self.check(pending.popleft(), path)
            if fsync_num is not None:
                self.check(fsync_num, path)
            self.check(close_num, path)
            attrs = attrs_or_none(self.reply(stat_num), path) if stat_num else self.stat(path)
            tail = []
            return attrs
        except (SftpStatusError, ExportError):
            # The stream is still in step: forget the replies, release the handle (the close goes
            # out with the next request). Any other failure ends the connection anyway.
            self.abandon([*pending, *tail])
            if not closed:
                self.close_quietly(handle)
            raise


def read_local(reader: IO[bytes], size: int, path: str) -> bytes:
    """Up to ``size`` bytes of the local file being uploaded to ``path``."""
    try:
        return reader.read(size)
    except OSError as exc:
        raise ExportError(
            ErrorCode.IO, f"reading the local file for {path}: {exc}", transient=False
        ) from exc
