"""The hand-written SFTP layer (adapters/sftp/protocol.py, connection.py) against a real sshd.

These tests talk to one ``SftpConnection`` directly, below the session: pipelined writes, the
error reply of a refused write, the close, renames, and the attributes decoded from replies.
"""

from __future__ import annotations

import dataclasses
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import (
    CMD_CLOSE,
    SFTP_FLAG_READ,
    SFTP_NO_SUCH_FILE,
)

from orderflow_exports.adapters.sftp.connect import open_connection
from orderflow_exports.adapters.sftp.connection import SftpConnection
from orderflow_exports.adapters.sftp.folders import kind_of
from orderflow_exports.adapters.sftp.host_keys import parse_host_keys
from orderflow_exports.adapters.sftp.protocol import WRITE_FLAGS, SftpStatusError, SftpStream
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sftp.watchdog import Watchdog
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports_tests.support.sshd import SshdServer

# The smallest write request, so that a small file already takes many pipelined writes.
SETTINGS = SftpSettings(
    connect_timeout=5.0,
    auth_timeout=5.0,
    operation_timeout=5.0,
    keepalive_interval=0,
    write_request_size=1024,
)
OUTSTANDING = 4


@pytest.fixture
def folder(sshd_server: SshdServer) -> Path:
    """An empty folder of its own on the server (also reachable locally: the server is local)."""
    path = sshd_server.root / f"proto-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def conn(sshd_server: SshdServer, folder: Path) -> Iterator[SftpConnection]:
    config = sshd_server.connector_config("acme", str(folder), str(folder / "acks"))
    watchdog = Watchdog()
    where = f"{config.username}@{config.host}:{config.port}"
    opened = open_connection(config, SETTINGS, parse_host_keys(config.host_key), watchdog, where)
    try:
        yield opened
    finally:
        opened.close()
        watchdog.stop()


def write(conn: SftpConnection, path: str, data: bytes, **kwargs: Any) -> Any:
    handle = conn.open(path, WRITE_FLAGS)
    return conn.write_and_close(
        handle,
        path,
        io.BytesIO(data),
        len(data),
        max_outstanding=kwargs.get("max_outstanding", OUTSTANDING),
        fsync=kwargs.get("fsync", True),
    )


def test_pipelined_writes_keep_several_requests_in_flight_and_land_whole(
    conn: SftpConnection, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(50 * 1024 + 17)  # 51 write requests of 1 KiB, the last one short
    path = str(folder / "file.json")
    handle = conn.open(path, WRITE_FLAGS)
    events: list[str] = []
    real_send_write, real_reply = SftpStream.send_write, SftpStream.reply

    def send_write(self: SftpStream, handle: bytes, offset: int, chunk: bytes) -> int:
        events.append("write")
        return real_send_write(self, handle, offset, chunk)

    def reply(self: SftpStream, num: int) -> Any:
        events.append("reply")
        return real_reply(self, num)

    monkeypatch.setattr(SftpStream, "send_write", send_write)
    monkeypatch.setattr(SftpStream, "reply", reply)

    attrs = conn.write_and_close(
        handle, path, io.BytesIO(data), len(data), max_outstanding=OUTSTANDING, fsync=True
    )

    assert (folder / "file.json").read_bytes() == data
    assert attrs is not None and attrs.st_size == len(data)
    assert events.count("write") == 51
    # Sent ahead of their replies, up to the limit: the first reply is awaited only after the
    # fourth write, and no more than four writes are ever unanswered.
    assert events.index("reply") == OUTSTANDING
    unanswered = 0
    for event in events:
        unanswered += 1 if event == "write" else -1
        assert unanswered <= OUTSTANDING


def test_a_refused_write_is_reported_and_the_stream_stays_in_step(
    conn: SftpConnection, folder: Path
) -> None:
    """The server refuses every write to a handle opened read-only.

    OpenSSH's sftp-server maps the EBADF of such a write to "no such file".
    """
    target = folder / "read-only.json"
    target.write_bytes(b"original")
    path = str(target)
    handle = conn.open(path, SFTP_FLAG_READ)

    with pytest.raises(SftpStatusError) as caught:
        conn.write_and_close(
            handle,
            path,
            io.BytesIO(os.urandom(10 * 1024)),
            10 * 1024,
            max_outstanding=OUTSTANDING,
            fsync=False,
        )

    assert caught.value.sftp_code == SFTP_NO_SUCH_FILE
    assert caught.value.filename == path
    assert target.read_bytes() == b"original"
    # The replies still owed were abandoned and the handle closed: the next request gets its own
    # reply, and the handle is gone on the server.
    attrs = conn.stat(path)
    assert attrs is not None and attrs.st_size == len(b"original")
    with pytest.raises(SftpStatusError):
        conn.check(conn.send(CMD_CLOSE, handle), path)


def test_paramiko_sftpfile_drops_the_error_reply_of_a_pipelined_write(
    conn: SftpConnection, folder: Path
) -> None:
    """Why the layer exists: paramiko's pipelined SFTPFile writes report no failed write.

    A write past the largest file offset the server's file system allows is refused; paramiko
    discards that reply and the close succeeds. When this test fails, paramiko reports such
    failures and could do the writes itself.
    """
    client = paramiko.SFTPClient.from_transport(conn.transport)
    assert client is not None
    try:
        with client.open(str(folder / "paramiko.json"), "w") as handle:
            handle.set_pipelined(True)
            handle.seek(2**62)
            handle.write(b"never written")
    finally:
        client.close()

    assert (folder / "paramiko.json").stat().st_size == 0
    # The same write through this layer is reported.
    path = str(folder / "ours.json")
    ours = conn.open(path, WRITE_FLAGS)
    stream = conn.stream
    with pytest.raises(SftpStatusError):
        conn.check(stream.send_write(ours, 2**62, b"never written"), path)
    conn.close_quietly(ours)


def test_write_and_close_closes_the_handle(conn: SftpConnection, folder: Path) -> None:
    path = str(folder / "closed.json")
    handle = conn.open(path, WRITE_FLAGS)

    attrs = conn.write_and_close(
        handle, path, io.BytesIO(b"{}"), 2, max_outstanding=OUTSTANDING, fsync=True
    )

    assert attrs is not None and attrs.st_size == 2
    # A second close is refused: the server no longer knows the handle.
    with pytest.raises(SftpStatusError):
        conn.check(conn.send(CMD_CLOSE, handle), path)


def test_a_short_local_file_fails_the_upload_and_closes_the_handle(
    conn: SftpConnection, folder: Path
) -> None:
    path = str(folder / "short.json")
    handle = conn.open(path, WRITE_FLAGS)

    with pytest.raises(ExportError) as caught:
        conn.write_and_close(
            handle, path, io.BytesIO(b"12345"), 6, max_outstanding=OUTSTANDING, fsync=False
        )

    assert caught.value.code == ErrorCode.SIZE_MISMATCH
    assert conn.stat(path) is not None  # the stream answers the next request
    with pytest.raises(SftpStatusError):
        conn.check(conn.send(CMD_CLOSE, handle), path)


def test_rename_never_replaces_and_posix_rename_does(conn: SftpConnection, folder: Path) -> None:
    write(conn, str(folder / ".a.tmp"), b"new")
    (folder / "a.json").write_bytes(b"old")

    assert conn.rename_no_replace(str(folder / ".a.tmp"), str(folder / "a.json")) is False
    assert (folder / "a.json").read_bytes() == b"old"

    assert conn.rename_no_replace(str(folder / ".a.tmp"), str(folder / "b.json")) is True
    assert sorted(os.listdir(folder)) == ["a.json", "b.json"]

    assert conn.has_posix_rename
    conn.posix_rename(str(folder / "b.json"), str(folder / "a.json"))
    assert sorted(os.listdir(folder)) == ["a.json"]
    assert (folder / "a.json").read_bytes() == b"new"

    with pytest.raises(SftpStatusError) as caught:
        conn.rename(str(folder / "missing.json"), str(folder / "c.json"))
    assert caught.value.sftp_code == SFTP_NO_SUCH_FILE


def test_attributes_are_decoded_from_stat_and_listing_replies(
    conn: SftpConnection, folder: Path
) -> None:
    (folder / "data.json").write_bytes(b"x" * 1234)
    (folder / "sub").mkdir()
    os.symlink(folder / "data.json", folder / "link")
    local = os.stat(folder / "data.json")

    attrs = conn.stat(str(folder / "data.json"))
    assert attrs is not None
    assert (attrs.st_size, attrs.st_mode, attrs.st_uid, attrs.st_gid) == (
        local.st_size,
        local.st_mode,
        local.st_uid,
        local.st_gid,
    )
    assert attrs.st_mtime == int(local.st_mtime)
    assert conn.stat(str(folder / "absent")) is None
    lstat = conn.lstat(str(folder / "link"))
    assert lstat is not None and kind_of(lstat.st_mode, "") == "symlink"

    entries = {entry.filename: entry for entry in conn.listdir(str(folder), 10)}
    assert sorted(entries) == ["data.json", "link", "sub"]
    assert entries["data.json"].st_size == 1234
    assert [kind_of(entries[name].st_mode, "") for name in sorted(entries)] == [
        "file",
        "symlink",
        "dir",
    ]
    assert entries["sub"].longname.startswith("d")


def test_write_size_follows_the_servers_limit(sshd_server: SshdServer, folder: Path) -> None:
    """OpenSSH advertises limits@openssh.com; a larger setting is lowered to it, never raised."""
    config = sshd_server.connector_config("acme", str(folder), str(folder / "acks"))
    watchdog = Watchdog()
    pins = parse_host_keys(config.host_key)
    largest = dataclasses.replace(SETTINGS, write_request_size=261_120)
    opened = open_connection(config, largest, pins, watchdog, "test")
    try:
        assert 1024 < opened.write_size <= 261_120
    finally:
        opened.close()
        watchdog.stop()
