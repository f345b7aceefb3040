"""The SFTP v3 packet stream, written by hand: requests numbered, every reply matched back.

paramiko's ``SFTPFile`` drops the error replies of pipelined writes: a write the server refused
(a full disk, a quota) is not reported, and the upload looks complete. So this layer sends the
requests itself and reads every reply, each matched to its request by number. It also queues
requests and sends them together when a reply is awaited, so that a publish of a small file is
three round trips, each one write.

The file and metadata requests (stat, listing, rename) go through the same stream rather than
paramiko's ``SFTPClient``: they are pipelined with the writes on one channel (an LSTAT shares the
OPEN's round trip, a STAT goes out behind the CLOSE); ``SFTPClient`` would need a channel (and a
server process) of its own, reports every status but "no such file" and "permission denied" as
an IOError without its code (the rename-without-replace needs the code), and
``SFTPClient.listdir_attr`` gathers a whole listing, which the listing limit must not.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_HANDLE,
    CMD_INIT,
    CMD_STATUS,
    CMD_VERSION,
    CMD_WRITE,
    SFTP_BAD_MESSAGE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTP_PERMISSION_DENIED,
    SFTPError,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

WRITE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
EXCLUSIVE_WRITE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
#: An empty SFTP attribute block (flags 0): "no attributes to set".
NO_ATTRS = 0


class SftpStatusError(OSError):
    """An SFTP status reply other than OK, as an OSError with the closest errno.

    The errno lets ``classify_os_error`` classify it like a local file-system error.
    """

    _ERRNO = {
        SFTP_NO_SUCH_FILE: errno.ENOENT,
        SFTP_PERMISSION_DENIED: errno.EACCES,
        SFTP_BAD_MESSAGE: errno.EINVAL,
        SFTP_OP_UNSUPPORTED: errno.EOPNOTSUPP,
    }

    def __init__(self, code: int, text: str, path: str) -> None:
        super().__init__(self._ERRNO.get(code, errno.EIO), text or f"SFTP status {code}", path)
        self.sftp_code = code


class SftpStream:
    """The SFTP v3 packet stream on an SSH channel: numbered requests out, replies matched back.

    paramiko's SFTPClient sends each request in its own write and reads each reply with two
    blocking reads. Here requests are queued and go out together when a reply is awaited,
    replies are parsed in bulk, and every reply is kept until its request asks for it.
    """

    _FLUSH_BYTES = 256 * 1024

    def __init__(self, channel: paramiko.Channel, on_progress: Callable[[], None]) -> None:
        self.channel = channel
        self._progress = on_progress
        self._next = 1
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._in = bytearray()
        self._replies: dict[int, tuple[int, Message]] = {}
        self._abandoned: set[int] = set()

    def handshake(self) -> dict[str, bytes]:
        """Send INIT, read VERSION; the extensions the server offers."""
        self._queue(struct.pack(">IBI", 5, CMD_INIT, 3))
        self.flush()
        t, msg = self._read_packet()
        if t != CMD_VERSION:
            raise SFTPError(f"not an SFTP server (first reply type {t})")
        msg.get_int()  # the version: OpenSSH answers 3, and we speak only 3
        extensions: dict[str, bytes] = {}
        while msg.get_remainder():
            name = msg.get_text()
            extensions[name] = msg.get_binary()
        return extensions

    def send(self, t: int, *args: Any) -> int:
        """Queue a request; returns its number. ``int64`` args are 64-bit, ``int`` 32-bit."""
        num = self._number()
        msg = Message()
        msg.add_int(num)
        for arg in args:
            if isinstance(arg, int64):
                msg.add_int64(arg)
            elif isinstance(arg, int):
                msg.add_int(arg)
            else:
                msg.add_string(arg)
        body = msg.asbytes()
        self._queue(struct.pack(">IB", len(body) + 1, t) + body)
        return num

    def send_write(self, handle: bytes, offset: int, data: bytes) -> int:
        """Queue a WRITE without copying ``data`` through a Message."""
        num = self._number()
        header = struct.pack(">IBII", 21 + len(handle) + len(data), CMD_WRITE, num, len(handle))
        self._queue(header + handle + struct.pack(">QI", offset, len(data)))
        self._queue(data)
        return num

    def flush(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        # A memoryview: paramiko slices what it sends per SSH packet; bytes would be copied.
        self.channel.sendall(memoryview(data))
        self._progress()

    def reply(self, num: int) -> tuple[int, Message]:
        """The reply to request ``num`` (sending what is queued first)."""
        self.flush()
        replies = self._replies
        while num not in replies:
            t, msg = self._read_packet()
            got = msg.get_int()
            if got in self._abandoned:
                self._abandoned.discard(got)
            else:
                replies[got] = (t, msg)
        return replies.pop(num)

    def abandon(self, num: int) -> None:
        """Drop the reply to request ``num``, now or when it arrives."""
        if self._replies.pop(num, None) is None:
            self._abandoned.add(num)

    def _number(self) -> int:
        num = self._next
        self._next = num + 1 if num < 0xFFFFFFFF else 1
        return num

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= self._FLUSH_BYTES:
            self.flush()

    def _read_packet(self) -> tuple[int, Message]:
        buffer = self._in
        while True:
            if len(buffer) >= 5:
                size = int.from_bytes(buffer[:4], "big")
                if size > 0x1000000:
                    raise SFTPError("garbled SFTP reply (length over 16 MiB)")
                if len(buffer) >= 4 + size:
                    t = buffer[4]
                    body = bytes(buffer[5 : 4 + size])
                    del buffer[: 4 + size]
                    return t, Message(body)
            chunk = self.channel.recv(1024 * 1024)
            if not chunk:
                raise EOFError("the server closed the SFTP channel")
            buffer += chunk
            self._progress()


# --- replies --------------------------------------------------------------------------------------

_FLAG_SIZE = 0x1
_FLAG_UIDGID = 0x2
_FLAG_PERMISSIONS = 0x4
_FLAG_AMTIME = 0x8
_FLAG_EXTENDED = 0x80000000


def read_attrs(
    msg: Message, filename: str | None = None, longname: str | None = None
) -> SFTPAttributes:
    """The ATTRS block at the read position of ``msg`` (SFTP v3, draft-02 §5) as SFTPAttributes.

    paramiko decodes this block only in a private classmethod; the layout is fixed by the
    protocol, so it is decoded here into the public fields.
    """
    attrs = SFTPAttributes()
    flags = msg.get_int()
    if flags & _FLAG_SIZE:
        attrs.st_size = msg.get_int64()
    if flags & _FLAG_UIDGID:
        attrs.st_uid = msg.get_int()
        attrs.st_gid = msg.get_int()
    if flags & _FLAG_PERMISSIONS:
        attrs.st_mode = msg.get_int()
    if flags & _FLAG_AMTIME:
        attrs.st_atime = msg.get_int()
        attrs.st_mtime = msg.get_int()
    if flags & _FLAG_EXTENDED:
        for _ in range(msg.get_int()):
            attrs.attr[msg.get_string()] = msg.get_string()
    if filename is not None:
        attrs.filename = filename
    if longname is not None:
        attrs.longname = longname
    return attrs


def raise_for_status(t: int, msg: Message, path: str) -> None:
    """Raise SftpStatusError unless the reply is a status OK (SFTPError when not a status)."""
    if t != CMD_STATUS:
        raise SFTPError(f"expected a status reply for {path}, got {t}")
    code = msg.get_int()
    text = msg.get_text()
    if code != SFTP_OK:
        raise SftpStatusError(code, text, path)


def attrs_or_none(reply: tuple[int, Message], path: str) -> SFTPAttributes | None:
    """The attributes in a stat reply; None when the file does not exist."""
    t, msg = reply
    if t == CMD_ATTRS:
        return read_attrs(msg)
    try:
        raise_for_status(t, msg, path)
    except SftpStatusError as exc:
        if exc.sftp_code == SFTP_NO_SUCH_FILE:
            return None
        raise
    raise SFTPError(f"unexpected reply {t} to a stat of {path}")


def handle_of(reply: tuple[int, Message], path: str) -> bytes:
    """The handle in an open reply."""
    t, msg = reply
    if t == CMD_HANDLE:
        return bytes(msg.get_binary())
    raise_for_status(t, msg, path)
    raise SFTPError(f"unexpected reply {t} to an open of {path}")
