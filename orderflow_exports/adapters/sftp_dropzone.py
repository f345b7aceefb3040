"""The dropzone on an SFTP server, over paramiko.

- The host key is always verified against the org's configured key, before any credential is
  sent; there is no trust on first use.
- Transfers are tuned: TCP_NODELAY, aes128-gcm first, writes of up to 255 KiB sent without waiting
  for each reply. paramiko's own pipelined writes drop the servers' error replies (FACTS: writing
  into a full disk raised nothing), so this module sends the SFTP requests itself and matches every
  reply to its request.
- Publishing is atomic: ``.{final}.tmp`` is written, its size on the server compared with the
  expected size, ``fsync@openssh.com`` sent when offered, and then it is renamed with the plain
  SFTP rename, which never replaces an existing file on OpenSSH.
- One session holds one connection for a whole run. When the connection dies, the next operation
  reconnects; an operation cut by a dropped connection is repeated once on a new one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import posixpath
import socket
import stat
import struct
import threading
import time
from base64 import b64decode, b64encode
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, TypeVar

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_INIT,
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
    CMD_STATUS,
    CMD_VERSION,
    CMD_WRITE,
    SFTP_BAD_MESSAGE,
    SFTP_EOF,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
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

from orderflow_exports.adapters.local_dropzone import (
    DEFAULT_MAX_LISTING_ENTRIES,
    classify_os_error,
    final_name_of_temp,
)
from orderflow_exports.adapters.secrets import SecretScope, resolve_secret
from orderflow_exports.domain.errors import ExportError, RenameOutcomeUnknown
from orderflow_exports.domain.naming import is_our_temp_file, temp_filename
from orderflow_exports.domain.ports import FolderEntry, NotARegularFile
from orderflow_exports.domain.records import ConnectorConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

#: OpenSSH's ``limits@openssh.com`` max-write-length: its 256 KiB message limit minus room for the
#: request header. A larger write request makes the server drop the whole session.
OPENSSH_MAX_WRITE = 261_120
_READ_REQUEST_SIZE = 64 * 1024
_MAX_NAME_SUFFIX = 1000
# Files above this size are not uploaded when their final name is already taken.
_PRECHECK_BYTES = 1024 * 1024
_WRITE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
_EXCLUSIVE_WRITE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
# paramiko's own banner, key-exchange and auth timeouts are set this much above ours, so that our
# watchdog fires first and the failure is reported as TIMEOUT rather than as a protocol error.
_PARAMIKO_TIMEOUT_MARGIN = 5.0
# An empty SFTP attribute block (flags 0): "no attributes to set".
_NO_ATTRS = 0


@dataclass(frozen=True)
class SftpSettings:
    """How SFTP sessions connect and transfer; the same for every org (its config says where).

    All durations are seconds.
    """

    connect_timeout: float = 10.0
    """TCP connect, SSH banner and key exchange must finish within this."""

    auth_timeout: float = 15.0
    """Authentication (public key or password) must finish within this."""

    operation_timeout: float = 30.0
    """An SFTP operation may go this long without any progress (a reply, a write accepted)
    before the connection is given up as dead (TIMEOUT). It bounds silence, not transfer time."""

    keepalive_interval: int = 15
    """Send an SSH keepalive after this many idle seconds so NAT and firewalls keep the
    connection of a long run open; 0 turns it off."""

    preferred_ciphers: tuple[str, ...] = (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes256-ctr",
    )
    """Ciphers offered first, in this order (paramiko's others follow). aes128-gcm is the fastest
    paramiko has; paramiko's own first choice, aes128-ctr, is slower."""

    write_request_size: int = OPENSSH_MAX_WRITE
    """Bytes per SFTP write request (~255 KiB). Lowered further to what the server advertises in
    ``limits@openssh.com``; OpenSSH drops the session on requests over its 256 KiB limit."""

    max_outstanding_writes: int = 32
    """Write requests sent ahead of their replies. The SSH channel window limits what is really in
    flight; this bounds memory and how far a failing upload runs on before it is noticed."""

    fsync: bool = True
    """Ask the server to flush the file to disk (``fsync@openssh.com``, when offered) before it
    gets its final name, so an ERP never reads a file a server crash can still truncate."""

    max_listing_entries: int = DEFAULT_MAX_LISTING_ENTRIES
    """A folder listing (the ack folder) stops after this many entries and the folder is
    reported as too large, an error for its org: a server that lists without end (or a folder
    nobody empties) cannot run this process out of memory. The sweep of stale temp files looks
    at no more than this many entries either."""

    secrets: SecretScope | None = None
    """Where ``file:`` secret references may point (see adapters/secrets.py); None: the
    process's ``ORDERFLOW_SECRET_DIRS`` (or its default), read when a secret is resolved."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "auth_timeout", "operation_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.keepalive_interval < 0:
            raise ValueError("keepalive_interval must be 0 (off) or positive")
        if not 1024 <= self.write_request_size <= OPENSSH_MAX_WRITE:
            raise ValueError(f"write_request_size must be between 1024 and {OPENSSH_MAX_WRITE}")
        if self.max_listing_entries < 1:
            raise ValueError("max_listing_entries must be at least 1")
        if self.max_outstanding_writes < 1:
            raise ValueError("max_outstanding_writes must be at least 1")
        if not self.preferred_ciphers:
            raise ValueError("preferred_ciphers must name at least one cipher")


def open_sftp_session(config: ConnectorConfig, settings: SftpSettings) -> SftpDropzoneSession:
    """Connect to ``config``'s SFTP server and return a session for the whole run.

    Raises ExportError (CONFIG, HOST_KEY, AUTH, CONNECTION, TIMEOUT) when it cannot connect.
    """
    session = SftpDropzoneSession(config, settings)
    session.connect()
    return session


# --- host keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedHostKey:
    """One accepted host key: its type (None when only a fingerprint was given) and fingerprint."""

    key_type: str | None
    fingerprint: str

    def describe(self) -> str:
        return f"{self.key_type} {self.fingerprint}" if self.key_type else self.fingerprint


def parse_host_keys(value: str | None) -> list[PinnedHostKey]:
    """The keys of a ``host_key`` setting: known_hosts lines or ``SHA256:`` fingerprints.

    A known_hosts line may start with host names (they are ignored: the org's config already says
    which host this is). Several keys may be given one per line, e.g. during a key rotation.
    Raises ValueError when a line is neither; returns [] when nothing is configured.
    """
    pins: list[PinnedHostKey] = []
    for raw in (value or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("SHA256:"):
            digest = line.split()[0][len("SHA256:") :].rstrip("=")
            try:
                decoded = b64decode(digest + "=" * (-len(digest) % 4), validate=True)
            except ValueError:
                decoded = b""
            if len(decoded) != 32:
                raise ValueError(f"{line[:60]!r} is not a SHA256 fingerprint")
            pins.append(PinnedHostKey(None, f"SHA256:{digest}"))
            continue
        if line.startswith("@"):
            raise ValueError("known_hosts markers (@cert-authority, @revoked) are not supported")
        tokens = line.split()
        for kind, encoded in zip(tokens, tokens[1:], strict=False):
            blob = _b64_or_none(encoded)
            if blob is not None and _blob_key_type(blob) == kind:
                pins.append(PinnedHostKey(kind, key_fingerprint(blob)))
                break
        else:
            raise ValueError(
                f"{line[:60]!r} is neither a known_hosts line ('ssh-ed25519 AAAA…') "
                "nor a SHA256: fingerprint"
            )
    return pins


def key_fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint of a public key blob."""
    return "SHA256:" + b64encode(sha256(blob).digest()).decode().rstrip("=")


def _b64_or_none(text: str) -> bytes | None:
    try:
        return b64decode(text, validate=True)
    except ValueError:
        return None


def _blob_key_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    length = int.from_bytes(blob[:4], "big")
    if length > len(blob) - 4:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def _host_key_algorithms(default: Iterable[str], pins: list[PinnedHostKey]) -> list[str]:
    """Host key algorithms with the pinned key types first, so the server shows the pinned key.

    The others stay (last), so that a server without the pinned type still presents a key and the
    refusal can name its fingerprint.
    """
    default = list(default)
    first: list[str] = []
    for pin in pins:
        if pin.key_type == "ssh-rsa":
            wanted = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        else:
            wanted = [pin.key_type] if pin.key_type else []
        first += [name for name in wanted if name in default and name not in first]
    return first + [name for name in default if name not in first]


# --- credentials ----------------------------------------------------------------------------------


def load_private_key(
    ref: str, passphrase: str | None = None, *, org_id: str, secrets: SecretScope | None = None
) -> paramiko.PKey:
    """The ed25519, RSA or ECDSA private key behind org ``org_id``'s secret reference ``ref``.

    Raises ExportError(CONFIG) when it cannot be read; the message never quotes the key.
    """
    text = resolve_secret(ref, org_id, secrets)
    data = text.encode("utf-8")
    loaded: Any = None
    used: str | None = None
    # The passphrase is tried first, then none: password_ref may be a login password while the
    # key itself is unencrypted (paramiko's own convention).
    for candidate in (passphrase, None) if passphrase else (None,):
        loaded = _parse_private_key(data, candidate.encode("utf-8") if candidate else None)
        if loaded is not None:
            used = candidate
            break
    if loaded is None:
        raise ExportError(
            ExportError.CONFIG,
            f"private key {ref} is not a readable OpenSSH or PEM private key "
            "(or its passphrase, taken from password_ref, is wrong)",
            transient=False,
        )
    key_class: type[paramiko.PKey]
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise ExportError(
            ExportError.CONFIG,
            f"private key {ref} is a {type(loaded).__name__}; use ed25519, RSA or ECDSA",
            transient=False,
        )
    try:
        return key_class.from_private_key(io.StringIO(text), password=used)
    except Exception:  # noqa: BLE001
        raise ExportError(
            ExportError.CONFIG, f"private key {ref} cannot be loaded by paramiko", transient=False
        ) from None


def _parse_private_key(data: bytes, password: bytes | None) -> Any:
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            return loader(data, password=password)
        except Exception:  # noqa: BLE001 - wrong format, wrong or missing passphrase: try the next
            continue
    return None


# --- low-level SFTP -------------------------------------------------------------------------------


class SftpStatusError(OSError):
    """An SFTP status reply other than OK, as an OSError with the closest errno.

    The errno lets :func:`classify_os_error` classify it like a local file-system error.
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


class _SftpStream:
    """The SFTP v3 packet stream on an SSH channel: numbered requests out, replies matched back.

    paramiko's SFTPClient sends each request in its own write and reads each reply with two
    blocking reads; its pipelined writes drop error replies. Here requests are queued and go out
    together when a reply is awaited (a publish of a small file is three round trips, each one
    write), replies are parsed in bulk, and every reply is kept until its request asks for it.
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


class _Watchdog:
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


class _Connection:
    """One authenticated SSH transport with its SFTP channel, and the requests sent on it."""

    def __init__(
        self,
        transport: paramiko.Transport,
        channel: paramiko.Channel,
        settings: SftpSettings,
        watchdog: _Watchdog,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.stream = _SftpStream(channel, watchdog.touch)
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
        _raise_for_status(t, msg, path)

    def abandon(self, nums: Iterable[int | None]) -> None:
        """Forget requests whose replies no longer matter (after a failure)."""
        for num in nums:
            if num is not None:
                self.stream.abandon(num)

    # file operations

    def stat(self, path: str) -> SFTPAttributes | None:
        return _attrs_or_none(self.reply(self.send(CMD_STAT, path)), path)

    def lstat(self, path: str) -> SFTPAttributes | None:
        return _attrs_or_none(self.reply(self.send(CMD_LSTAT, path)), path)

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
                _raise_for_status(t, msg, path)
            except SftpStatusError as exc:
                if exc.sftp_code == SFTP_EOF:
                    break
                raise
            raise SFTPError(f"unexpected reply {t} to a read of {path}")
        return bytes(data) if len(data) <= max_bytes else None

    def open(self, path: str, flags: int) -> bytes:
        return _handle(self.reply(self.send(CMD_OPEN, path, flags, _NO_ATTRS)), path)

    def close_quietly(self, handle: bytes) -> None:
        """Close ``handle`` without waiting; the request goes out with the next one."""
        self.abandon([self.send(CMD_CLOSE, handle)])

    def remove(self, path: str) -> None:
        self.check(self.send(CMD_REMOVE, path), path)

    def rename(self, source: str, target: str) -> None:
        self.check(self.send(CMD_RENAME, source, target), target)

    def posix_rename(self, source: str, target: str) -> None:
        self.check(self.send(CMD_EXTENDED, "posix-rename@openssh.com", source, target), target)

    def mkdir(self, path: str) -> None:
        self.check(self.send(CMD_MKDIR, path, _NO_ATTRS), path)

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
        handle = _handle(self.reply(self.send(CMD_OPENDIR, folder)), folder)
        try:
            while True:
                t, msg = self.reply(self.send(CMD_READDIR, handle))
                if t != CMD_NAME:
                    try:
                        _raise_for_status(t, msg, folder)
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
                    entry = SFTPAttributes._from_msg(msg, filename, longname)
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


class FolderTooLarge(Exception):
    """A folder listing went past its limit; it was stopped there and nothing of it is used."""

    def __init__(self, folder: str, limit: int) -> None:
        super().__init__(f"{folder} has more than {limit} entries")
        self.folder = folder
        self.limit = limit


def _raise_for_status(t: int, msg: Message, path: str) -> None:
    if t != CMD_STATUS:
        raise SFTPError(f"expected a status reply for {path}, got {t}")
    code = msg.get_int()
    text = msg.get_text()
    if code != SFTP_OK:
        raise SftpStatusError(code, text, path)


def _attrs_or_none(reply: tuple[int, Message], path: str) -> SFTPAttributes | None:
    """The attributes in a stat reply; None when the file does not exist."""
    t, msg = reply
    if t == CMD_ATTRS:
        return SFTPAttributes._from_msg(msg)
    try:
        _raise_for_status(t, msg, path)
    except SftpStatusError as exc:
        if exc.sftp_code == SFTP_NO_SUCH_FILE:
            return None
        raise
    raise SFTPError(f"unexpected reply {t} to a stat of {path}")


def _handle(reply: tuple[int, Message], path: str) -> bytes:
    """The handle in an open reply."""
    t, msg = reply
    if t == CMD_HANDLE:
        return bytes(msg.get_binary())
    _raise_for_status(t, msg, path)
    raise SFTPError(f"unexpected reply {t} to an open of {path}")


# --- the session ----------------------------------------------------------------------------------


@dataclass
class _PublishState:
    """What a publish attempt has done, so that a repeat after a dropped connection is safe."""

    temp_opened: bool = False
    claimed: bool = False
    """The caller's rename right was taken: from then on the caller settles a failure by looking
    at the temp file, so it is left where it is."""
    rename_sent: bool = False


class SftpDropzoneSession:
    """The ``DropzoneSession`` port over one SFTP connection, reused for every file of a run.

    Operations run one at a time (a lock). When the connection has died, the next operation
    reconnects; when it dies during an operation, that operation is repeated once on a new
    connection, except that a publish whose rename was already sent is never uploaded again: it
    checks whether the rename landed and otherwise raises RenameOutcomeUnknown. A timeout is not
    repeated: the connection is closed and the next operation reconnects.
    """

    def __init__(self, config: ConnectorConfig, settings: SftpSettings) -> None:
        if config.transport != "sftp" or not config.host or not config.username:
            raise ExportError(
                ExportError.CONFIG,
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
                ExportError.CONFIG, f"host_key of {config.org_id}: {exc}", transient=False
            ) from None
        self._watchdog = _Watchdog()
        self._lock = threading.RLock()
        self._conn: _Connection | None = None
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

    def _reconnect(self, action: str) -> _Connection:
        if self._closed:
            raise ExportError(ExportError.CONFIG, "the SFTP session is closed", transient=False)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        conn = self._open_connection()
        self._conn = conn
        if self._orphans:
            self._remove_orphans(conn)
        return conn

    def _open_connection(self) -> _Connection:
        config, settings, where = self._config, self._settings, self._where
        # Credentials first: a broken reference is reported without touching the network.
        # The scope keeps a row from naming another variable or file as its credential.
        org, secrets = config.org_id, settings.secrets
        password = (
            resolve_secret(config.password_ref, org, secrets) if config.password_ref else None
        )
        key = (
            load_private_key(config.private_key_ref, password, org_id=org, secrets=secrets)
            if config.private_key_ref
            else None
        )
        try:
            sock = socket.create_connection(
                (config.host, config.port or 22), timeout=settings.connect_timeout
            )
        except TimeoutError as exc:
            raise ExportError(
                ExportError.TIMEOUT,
                f"connecting to {where}: no answer within {settings.connect_timeout:g} s",
                transient=True,
            ) from exc
        except OSError as exc:
            raise ExportError(
                ExportError.CONNECTION,
                f"connecting to {where}: {exc.strerror or exc}",
                transient=True,
            ) from exc
        # paramiko never sets it; without it small requests wait for delayed ACKs (~1 MB/s).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        transport = paramiko.Transport(sock)
        watchdog = self._watchdog
        phase, limit = "connecting to", settings.connect_timeout
        try:
            transport.banner_timeout = settings.connect_timeout + _PARAMIKO_TIMEOUT_MARGIN
            transport.handshake_timeout = settings.connect_timeout + _PARAMIKO_TIMEOUT_MARGIN
            transport.auth_timeout = settings.auth_timeout + _PARAMIKO_TIMEOUT_MARGIN
            options = transport.get_security_options()
            options.ciphers = self._cipher_order(options.ciphers)
            options.key_types = _host_key_algorithms(options.key_types, self._pins)

            watchdog.arm(settings.connect_timeout, transport.close)
            negotiated = threading.Event()
            transport.start_client(event=negotiated)
            # Polled: when the watchdog closes a transport stuck before its banner, paramiko
            # does not set the event.
            while not negotiated.wait(0.05) and transport.is_active():
                pass
            if not transport.is_active() or not negotiated.is_set():
                raise transport.get_exception() or paramiko.SSHException("negotiation failed")
            # The host key is checked before any credential is sent.
            self._verify_host_key(transport.get_remote_server_key())

            phase, limit = "authenticating to", settings.auth_timeout
            watchdog.arm(settings.auth_timeout, transport.close)
            self._authenticate(transport, key, password)

            phase, limit = "opening SFTP on", settings.operation_timeout
            watchdog.arm(settings.operation_timeout, transport.close)
            channel = transport.open_session(
                timeout=settings.operation_timeout + _PARAMIKO_TIMEOUT_MARGIN
            )
            channel.settimeout(settings.operation_timeout)
            channel.invoke_subsystem("sftp")
            conn = _Connection(transport, channel, settings, watchdog)
            if settings.keepalive_interval:
                transport.set_keepalive(settings.keepalive_interval)
        except ExportError:
            transport.close()
            raise
        except Exception as exc:
            fired = watchdog.fired
            transport.close()
            if fired or isinstance(exc, TimeoutError):
                raise ExportError(
                    ExportError.TIMEOUT,
                    f"{phase} {where}: no progress within {limit:g} s",
                    transient=True,
                ) from exc
            if isinstance(exc, paramiko.AuthenticationException):
                raise ExportError(
                    ExportError.AUTH, f"{phase} {where}: {exc}", transient=False
                ) from exc
            raise ExportError(
                ExportError.CONNECTION,
                f"{phase} {where}: {exc or type(exc).__name__}",
                transient=True,
            ) from exc
        finally:
            watchdog.disarm()
        log.info(
            "connected to %s (%s, host key %s, fsync %s, write size %d)",
            where,
            transport.remote_cipher,
            transport.get_remote_server_key().fingerprint,
            "yes" if conn.has_fsync else "no",
            conn.write_size,
        )
        return conn

    def _cipher_order(self, available: Iterable[str]) -> list[str]:
        available = list(available)
        unknown = [name for name in self._settings.preferred_ciphers if name not in available]
        if unknown:
            raise ExportError(
                ExportError.CONFIG,
                f"unknown SFTP cipher(s) {', '.join(unknown)}; paramiko knows "
                f"{', '.join(available)}",
                transient=False,
            )
        first = list(self._settings.preferred_ciphers)
        return first + [name for name in available if name not in first]

    def _verify_host_key(self, presented: paramiko.PKey) -> None:
        shown = f"{presented.get_name()} {presented.fingerprint}"
        if not self._pins:
            raise ExportError(
                ExportError.HOST_KEY,
                f"no host key is configured for {self._where} (org {self._config.org_id}); "
                f"the server presented {shown}. Check it with the server's owner, then set "
                "host_key; refusing to connect without one",
                transient=False,
            )
        if any(pin.fingerprint == presented.fingerprint for pin in self._pins):
            return
        expected = " or ".join(pin.describe() for pin in self._pins)
        raise ExportError(
            ExportError.HOST_KEY,
            f"host key of {self._where} does not match: expected {expected}, the server "
            f"presented {shown}. Refusing to connect (the server may have been replaced, or the "
            "connection intercepted); update host_key only after checking the new key",
            transient=False,
        )

    def _authenticate(
        self, transport: paramiko.Transport, key: paramiko.PKey | None, password: str | None
    ) -> None:
        username = self._config.username
        refused: list[str] = []
        if key is not None:
            try:
                remaining = transport.auth_publickey(username, key)
            except paramiko.AuthenticationException as exc:
                refused.append(f"key {self._config.private_key_ref} ({exc})")
                remaining = []
            if (
                not transport.is_authenticated()
                and password is not None
                and remaining
                and "password" not in remaining
            ):
                refused.append(f"password not offered (server wants {', '.join(remaining)})")
                password = None
        if not transport.is_authenticated() and password is not None:
            try:
                transport.auth_password(username, password)
            except paramiko.AuthenticationException as exc:
                refused.append(f"password {self._config.password_ref} ({exc})")
        if not transport.is_authenticated():
            raise ExportError(
                ExportError.AUTH,
                f"authenticating to {self._where} as {username} failed: "
                + ("; ".join(refused) or "no credentials"),
                transient=False,
            )

    # running operations

    def _run(self, action: str, operation: Callable[[_Connection], T]) -> T:
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
                if error.code == ExportError.CONNECTION and not reconnected:
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

    def _classify(self, exc: Exception, action: str, conn: _Connection) -> ExportError:
        if self._watchdog.fired or isinstance(exc, TimeoutError):
            return ExportError(
                ExportError.TIMEOUT,
                f"{action}: no progress from {self._where} within "
                f"{self._settings.operation_timeout:g} s",
                transient=True,
            )
        if isinstance(exc, SftpStatusError):
            return classify_os_error(exc, f"{action} on {self._where}")
        if not conn.alive() or isinstance(exc, EOFError | OSError | paramiko.SSHException):
            return ExportError(
                ExportError.CONNECTION,
                f"{action}: connection to {self._where} lost ({exc or type(exc).__name__})",
                transient=True,
            )
        return ExportError(ExportError.IO, f"{action} on {self._where}: {exc}", transient=True)

    # the DropzoneSession port

    def publish(
        self,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        final_path = _join(folder, final_name)
        temp_path = _join(folder, temp_filename(final_name))
        state = _PublishState()
        try:
            reader = source.open("rb")
        except OSError as exc:
            raise ExportError(
                ExportError.IO, f"cannot read {source}: {exc.strerror or exc}", transient=False
            ) from exc
        with self._lock, reader:
            try:
                return self._run(
                    f"publishing {final_path}",
                    lambda conn: self._publish_once(
                        conn,
                        folder,
                        final_path,
                        temp_path,
                        reader,
                        expected_size,
                        state,
                        before_rename,
                    ),
                )
            except ExportError:
                # Once the rename right is claimed the temp file is evidence: still there, the
                # rename did not happen (after a refusal, or a lost reply). The caller settles it;
                # removing it here would make a refused rename look like a delivered file.
                if state.temp_opened and not (state.claimed or state.rename_sent):
                    self._discard_temp(temp_path)
                raise

    def _publish_once(
        self,
        conn: _Connection,
        folder: str,
        final_path: str,
        temp_path: str,
        reader: IO[bytes],
        expected_size: int,
        state: _PublishState,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        if state.rename_sent:
            # The connection dropped after the rename was sent. Never upload again: the ERP may
            # have taken the file at once, so a missing final name proves nothing.
            return self._after_lost_rename_reply(conn, final_path, temp_path, expected_size)
        # A big file is not uploaded when its final name is taken (the check shares the open's
        # round trip). For a small one the extra request costs more than it saves: the rename
        # refuses an existing name anyway.
        final_num = conn.send(CMD_LSTAT, final_path) if expected_size > _PRECHECK_BYTES else None
        open_num = conn.send(CMD_OPEN, temp_path, _WRITE_FLAGS, _NO_ATTRS)
        final_reply = conn.reply(final_num) if final_num is not None else None
        try:
            handle = _handle(conn.reply(open_num), temp_path)
        except SftpStatusError as exc:
            if exc.sftp_code == SFTP_NO_SUCH_FILE:
                raise ExportError(
                    ExportError.CONFIG,
                    f"export folder {folder} does not exist on {self._where}",
                    transient=False,
                ) from exc
            raise
        state.temp_opened = True
        try:
            existing = _attrs_or_none(final_reply, final_path) if final_reply else None
        except BaseException:
            conn.close_quietly(handle)
            raise
        if existing is not None:
            conn.close_quietly(handle)
            raise ExportError(
                ExportError.NAME_EXISTS,
                f"{final_path} already exists on {self._where}; not replacing it",
                transient=False,
            )
        reader.seek(0)
        try:
            attrs = self._write_temp(conn, handle, temp_path, reader, expected_size)
        except SftpStatusError as exc:
            # A full disk comes back as a plain "Failure": ask the server how much room is left.
            full = self._full_disk_error(conn, folder, temp_path, expected_size, None)
            if full is None:
                raise
            raise full from exc
        if attrs.st_size != expected_size:
            raise self._full_disk_error(
                conn, folder, temp_path, expected_size, attrs.st_size
            ) or ExportError(
                ExportError.SIZE_MISMATCH,
                f"{temp_path} has {attrs.st_size} bytes on {self._where}, expected "
                f"{expected_size}; not publishing it",
                transient=True,
            )
        if before_rename is not None:
            before_rename()  # raises when this export is no longer ours: no rename
            state.claimed = True
        state.rename_sent = True
        try:
            renamed = self._rename_no_replace(conn, temp_path, final_path)
        except SftpStatusError:
            state.rename_sent = False  # the server answered: the rename did not happen
            raise
        state.rename_sent = False
        if not renamed:
            raise ExportError(
                ExportError.NAME_EXISTS,
                f"{final_path} appeared on {self._where} during the upload; not replacing it",
                transient=False,
            )
        state.temp_opened = False
        return final_path

    def _write_temp(
        self, conn: _Connection, handle: bytes, path: str, reader: IO[bytes], expected_size: int
    ) -> SFTPAttributes:
        """Write ``reader`` to the open ``handle`` (pipelined), flush, close; the file's attrs.

        The handle is closed in every case.
        """
        pending: deque[int] = deque()
        tail: list[int | None] = []
        closed = False
        try:
            offset = 0
            limit = self._settings.max_outstanding_writes
            size = conn.write_size
            while chunk := _read_local(reader, size, path):
                pending.append(conn.stream.send_write(handle, offset, chunk))
                offset += len(chunk)
                while len(pending) >= limit:
                    conn.check(pending.popleft(), path)
            if offset != expected_size:
                raise ExportError(
                    ExportError.SIZE_MISMATCH,
                    f"the local file for {path} has {offset} bytes, expected {expected_size}",
                    transient=False,
                )
            fsync_num = None
            if self._settings.fsync and conn.has_fsync:
                fsync_num = conn.send(CMD_EXTENDED, "fsync@openssh.com", handle)
            close_num = conn.send(CMD_CLOSE, handle)
            closed = True
            stat_num = conn.send(CMD_STAT, path) if conn.in_order else None
            tail = [fsync_num, close_num, stat_num]
            while pending:
                conn.check(pending.popleft(), path)
            if fsync_num is not None:
                conn.check(fsync_num, path)
            conn.check(close_num, path)
            attrs = _attrs_or_none(conn.reply(stat_num), path) if stat_num else conn.stat(path)
            tail = []
            if attrs is None:
                raise ExportError(
                    ExportError.IO, f"{path} vanished on {self._where} after upload", transient=True
                )
            return attrs
        except (SftpStatusError, ExportError):
            # The stream is still in step: forget the replies, release the handle (the close goes
            # out with the next request). Any other failure ends the connection anyway.
            conn.abandon([*pending, *tail])
            if not closed:
                conn.close_quietly(handle)
            raise

    def _full_disk_error(
        self,
        conn: _Connection,
        folder: str,
        path: str,
        expected_size: int,
        actual_size: int | None,
    ) -> ExportError | None:
        """DISK_FULL when the server's file system has no room for the file, else None."""
        try:
            free = conn.free_bytes(folder)
        except SftpStatusError:
            return None
        if free is None or free >= expected_size - (actual_size or 0):
            return None
        got = "part" if actual_size is None else f"{actual_size}"
        return ExportError(
            ExportError.DISK_FULL,
            f"no room for {path} on {self._where}: {got} of {expected_size} bytes written, "
            f"{free} bytes free",
            transient=False,
        )

    def _after_lost_rename_reply(
        self, conn: _Connection, final_path: str, temp_path: str, expected_size: int
    ) -> str:
        """The final path when the rename is seen to have landed; else RenameOutcomeUnknown."""
        landed = conn.stat(final_path)
        if landed is not None and landed.st_size == expected_size and conn.stat(temp_path) is None:
            log.info("%s: the rename sent before the connection dropped had landed", final_path)
            return final_path
        raise RenameOutcomeUnknown(
            f"the connection to {self._where} dropped after the rename of {temp_path} to "
            f"{final_path} was sent; its outcome is unknown and the file is not uploaded again"
        )

    @staticmethod
    def _rename_no_replace(conn: _Connection, source: str, target: str) -> bool:
        """Rename without replacing; False when ``target`` exists."""
        try:
            conn.rename(source, target)
            return True
        except SftpStatusError:
            # OpenSSH refuses a plain rename onto an existing name; some servers refuse plain
            # renames altogether. posix-rename replaces, so it is used only once the name is free.
            if conn.stat(target) is not None:
                return False
            if not conn.has_posix_rename:
                raise
        conn.posix_rename(source, target)
        return True

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

    def _remove_orphans(self, conn: _Connection) -> None:
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

    def exists(self, folder: str, name: str) -> bool:
        path = _join(folder, name)
        with self._lock:
            return self._run(f"checking {path}", lambda conn: conn.stat(path) is not None)

    def remove_temp(self, folder: str, final_name: str) -> bool:
        path = _join(folder, temp_filename(final_name))

        def remove(conn: _Connection) -> bool:
            try:
                conn.remove(path)
            except SftpStatusError as exc:
                if exc.sftp_code == SFTP_NO_SUCH_FILE:
                    return False
                raise
            return True

        with self._lock:
            removed = self._run(f"removing {path}", remove)
            self._orphans.discard(path)
            return removed

    def sweep_stale_temps(
        self,
        folder: str,
        older_than: timedelta,
        keep: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """Remove our temp files in ``folder`` older than ``older_than`` (by the server's mtime).

        Ages compare the server's modification times with this machine's clock; keep the age far
        above any clock skew (hours, not seconds). ``keep`` is asked, with the final name a stale
        temp file stands for, whether to leave it (the temp file of a row whose rename right is
        taken is the evidence its settling needs).
        """

        def sweep(conn: _Connection) -> list[str]:
            cutoff = time.time() - older_than.total_seconds()
            stale = []
            limit = self._settings.max_listing_entries
            with contextlib.closing(_iter_listdir_or_empty(conn, folder)) as listing:
                for seen, entry in enumerate(listing, start=1):
                    if seen > limit:
                        # Only tidiness: a huge folder must not fail the export that sweeps it.
                        log.warning(
                            "%s on %s has more than %d entries; swept only the first ones",
                            folder,
                            self._where,
                            limit,
                        )
                        break
                    if not (is_our_temp_file(entry.filename) and _is_file(entry)):
                        continue
                    if entry.st_mtime is None or entry.st_mtime >= cutoff:
                        continue
                    stale.append(entry.filename)
            if keep is not None:
                # Asked once the listing is closed: the answer may take a database round trip.
                stale = [name for name in stale if not keep(final_name_of_temp(name))]
            removed = []
            for name in stale:
                try:
                    conn.remove(_join(folder, name))
                except SftpStatusError as exc:
                    if exc.sftp_code == SFTP_NO_SUCH_FILE:
                        continue  # removed meanwhile
                    raise
                removed.append(name)
            return sorted(removed)

        with self._lock:
            removed = self._run(f"sweeping {folder}", sweep)
        for name in removed:
            log.info("removed stale temp file %s from %s on %s", name, folder, self._where)
        return removed

    def list_entries(self, folder: str) -> list[FolderEntry]:
        """The entries of ``folder`` with the attributes READDIR gives.

        OpenSSH's READDIR reports lstat attributes, so a symlink is listed as a symlink.
        """

        def listing(conn: _Connection) -> list[SFTPAttributes]:
            try:
                return conn.listdir(folder, self._settings.max_listing_entries)
            except FolderTooLarge as exc:
                raise ExportError(
                    ExportError.IO,
                    f"folder {folder} on {self._where} has more than {exc.limit} entries; "
                    "not reading it (fewer files there, or a higher max_listing_entries)",
                    transient=False,
                ) from None
            except SftpStatusError as exc:
                if exc.sftp_code == SFTP_NO_SUCH_FILE:
                    raise ExportError(
                        ExportError.CONFIG,
                        f"folder {folder} does not exist on {self._where}",
                        transient=False,
                    ) from exc
                raise

        with self._lock:
            attrs = self._run(f"listing {folder}", listing)
        return sorted((_folder_entry(a) for a in attrs), key=lambda e: e.name)

    def list_files(self, folder: str) -> list[str]:
        return [entry.name for entry in self.list_entries(folder) if entry.kind == "file"]

    def read_file(self, folder: str, name: str, max_bytes: int) -> bytes:
        path = _join(folder, name)

        def read(conn: _Connection) -> bytes | None:
            # SFTP cannot open without following symlinks: the name is lstat-ed before and after
            # the open and the open handle fstat-ed; all three must be the same regular file.
            before = conn.lstat(path)
            if before is None:
                raise SftpStatusError(SFTP_NO_SUCH_FILE, "No such file", path)
            _require_regular(before, path)
            handle = conn.open(path, SFTP_FLAG_READ)
            try:
                opened = _attrs_of_handle(conn, handle, path)
                after = conn.lstat(path)
                if after is None or not (_same_file(before, opened) and _same_file(before, after)):
                    raise NotARegularFile(path, "replaced while it was opened")
                return conn.read_handle(handle, path, opened.st_size, max_bytes)
            finally:
                conn.close_quietly(handle)

        with self._lock:
            data = self._run(f"reading {path}", read)
        if data is None:
            raise ExportError(
                ExportError.IO, f"{path} is larger than {max_bytes} bytes", transient=False
            )
        return data

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        source = _join(folder, name)
        target_dir = _join(folder, subfolder)

        def move(conn: _Connection) -> str:
            _ensure_real_dir(conn, target_dir)
            target = _join(target_dir, name)
            source_num = conn.send(CMD_LSTAT, source)
            target_num = conn.send(CMD_LSTAT, target)
            source_attrs = _attrs_or_none(conn.reply(source_num), source)
            target_attrs = _attrs_or_none(conn.reply(target_num), target)
            if source_attrs is None:
                if target_attrs is not None:
                    return target  # moved by an earlier, interrupted pass
                raise ExportError(
                    ExportError.IO,
                    f"{source} is not on {self._where} (nor in {subfolder}/)",
                    transient=False,
                )
            for counter in range(1, _MAX_NAME_SUFFIX + 1):
                if self._rename_no_replace(conn, source, target):
                    return target
                target = _join(target_dir, f"{name}.{counter}")
            raise ExportError(
                ExportError.NAME_EXISTS,
                f"{_MAX_NAME_SUFFIX} files named {name}(.N) already in {target_dir}",
                transient=False,
            )

        with self._lock:
            return self._run(f"moving {source} to {subfolder}/", move)

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        final_path = _join(folder, name)
        temp_path = _join(folder, temp_filename(name))

        def write(conn: _Connection) -> str:
            parent = posixpath.dirname(folder.rstrip("/"))
            if parent and parent != folder:
                _makedirs(conn, parent)
            _ensure_real_dir(conn, folder)
            # EXCL: O_CREAT|O_EXCL on the server never follows a symlink planted at the name.
            try:
                handle = conn.open(temp_path, _EXCLUSIVE_WRITE_FLAGS)
            except SftpStatusError:
                if conn.lstat(temp_path) is None:
                    raise
                conn.remove(temp_path)  # removes a symlink itself, never its target
                handle = conn.open(temp_path, _EXCLUSIVE_WRITE_FLAGS)
            try:
                attrs = self._write_temp(conn, handle, temp_path, io.BytesIO(data), len(data))
                if attrs.st_size != len(data):
                    raise ExportError(
                        ExportError.SIZE_MISMATCH,
                        f"{temp_path} has {attrs.st_size} bytes, expected {len(data)}",
                        transient=True,
                    )
                # Like the local dropzone, this small file replaces an older one of its name.
                if conn.has_posix_rename:
                    conn.posix_rename(temp_path, final_path)
                elif not self._rename_no_replace(conn, temp_path, final_path):
                    conn.remove(final_path)
                    conn.rename(temp_path, final_path)
            except (SftpStatusError, ExportError):
                with contextlib.suppress(SftpStatusError):
                    conn.remove(temp_path)
                raise
            except BaseException:
                self._orphans.add(temp_path)  # removed after reconnecting
                raise
            return final_path

        with self._lock:
            return self._run(f"writing {final_path}", write)

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


def _read_local(reader: IO[bytes], size: int, path: str) -> bytes:
    try:
        return reader.read(size)
    except OSError as exc:
        raise ExportError(
            ExportError.IO, f"reading the local file for {path}: {exc}", transient=False
        ) from exc


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if folder else name


def _is_file(entry: SFTPAttributes) -> bool:
    if entry.st_mode is not None:
        return stat.S_ISREG(entry.st_mode)
    # Servers that send no permissions still send an `ls -l` style long name.
    return str(getattr(entry, "longname", "") or "").startswith("-")


def _kind_of(mode: int | None, longname: str) -> str:
    if mode is None:
        # Servers that send no permissions still send an `ls -l` style long name.
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


def _folder_entry(attrs: SFTPAttributes) -> FolderEntry:
    kind = _kind_of(attrs.st_mode, str(getattr(attrs, "longname", "") or ""))
    mtime = float(attrs.st_mtime) if attrs.st_mtime is not None else None
    size = attrs.st_size if kind == "file" else None
    return FolderEntry(attrs.filename, kind, size, mtime)  # type: ignore[arg-type]


def _require_regular(attrs: SFTPAttributes, path: str) -> None:
    kind = _kind_of(attrs.st_mode, str(getattr(attrs, "longname", "") or ""))
    if kind != "file":
        found = {"symlink": "a symbolic link", "dir": "a folder", "fifo": "a FIFO"}
        raise NotARegularFile(path, found.get(kind, "a socket or device"))


def _attrs_of_handle(conn: _Connection, handle: bytes, path: str) -> SFTPAttributes:
    t, msg = conn.reply(conn.send(CMD_FSTAT, handle))
    if t != CMD_ATTRS:
        _raise_for_status(t, msg, path)
        raise SFTPError(f"unexpected reply {t} to an fstat of {path}")
    attrs = SFTPAttributes._from_msg(msg)
    _require_regular(attrs, path)
    return attrs


def _same_file(a: SFTPAttributes, b: SFTPAttributes) -> bool:
    """As close to "same inode" as SFTP v3 gets: type, size, times and owner all equal."""
    return (a.st_mode, a.st_size, a.st_mtime, a.st_uid, a.st_gid) == (
        b.st_mode,
        b.st_size,
        b.st_mtime,
        b.st_uid,
        b.st_gid,
    )


def _ensure_real_dir(conn: _Connection, folder: str) -> None:
    """Create ``folder`` when missing; refuse it when it is a symlink or not a folder."""
    attrs = conn.lstat(folder)
    if attrs is None:
        try:
            conn.mkdir(folder)
        except SftpStatusError:
            if conn.lstat(folder) is None:  # not created by someone else meanwhile
                raise
        attrs = conn.lstat(folder)
    kind = _kind_of(attrs.st_mode if attrs else None, str(getattr(attrs, "longname", "") or ""))
    if attrs is None or kind != "dir":
        raise ExportError(
            ExportError.CONFIG,
            f"{folder} is not a real folder ({kind}); refusing to use it",
            transient=False,
        )


def _iter_listdir_or_empty(conn: _Connection, folder: str) -> Generator[SFTPAttributes, None, None]:
    listing = conn.iter_listdir(folder)
    try:
        yield from listing
    except SftpStatusError as exc:
        if exc.sftp_code != SFTP_NO_SUCH_FILE:
            raise
    finally:
        listing.close()


def _makedirs(conn: _Connection, folder: str) -> None:
    """Create ``folder`` and missing parents (no-op when it exists)."""
    if not folder:
        return
    attrs = conn.stat(folder)
    if attrs is not None:
        if attrs.st_mode is not None and not stat.S_ISDIR(attrs.st_mode):
            raise ExportError(ExportError.CONFIG, f"{folder} is not a folder", transient=False)
        return
    parent = posixpath.dirname(folder.rstrip("/"))
    if parent and parent != folder:
        _makedirs(conn, parent)
    try:
        conn.mkdir(folder)
    except SftpStatusError:
        if conn.stat(folder) is None:  # not created by someone else meanwhile
            raise
