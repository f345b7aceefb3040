"""The SFTP dropzone against a real OpenSSH sshd (``sshd_server`` from support/sshd.py).

The server runs on this machine, so the tests look at the dropzone folders directly: after every
fault, nothing is lost and no partial file ever carries a final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from paramiko.sftp import CMD_EXTENDED

from orderflow_exports.adapters.sftp.host_keys import parse_host_keys
from orderflow_exports.adapters.sftp.protocol import SftpStream
from orderflow_exports.adapters.sftp.session import SftpDropzoneSession, open_sftp_session
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import temp_filename
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.support.components import require_component
from orderflow_exports_tests.support.sshd import SshdServer

# Short timeouts keep the fault tests quick; they are limits, not expectations of speed.
SETTINGS = SftpSettings(
    connect_timeout=5.0, auth_timeout=5.0, operation_timeout=5.0, keepalive_interval=0
)
FAST_TIMEOUTS = dataclasses.replace(
    SETTINGS, connect_timeout=1.0, auth_timeout=1.0, operation_timeout=1.0
)
# Only a guard against a hang: a call that has not returned by then is reported as hanging.
HANG_GUARD_SECONDS = 60.0


@pytest.fixture
def dropzone(sshd_server: SshdServer) -> Path:
    """An empty export folder of its own on the server."""
    folder = sshd_server.root / f"org-{uuid.uuid4().hex[:12]}" / "orders"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def config(sshd_server: SshdServer, dropzone: Path) -> ConnectorConfig:
    return sshd_server.connector_config("acme", str(dropzone), str(dropzone.parent / "acks"))


@pytest.fixture
def session(config: ConnectorConfig) -> Iterator[SftpDropzoneSession]:
    opened = open_sftp_session(config, SETTINGS)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[int], Path]:
    def make(size: int) -> Path:
        path = tmp_path / f"source-{uuid.uuid4().hex[:8]}.json"
        path.write_bytes(os.urandom(size))
        return path

    return make


def names_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def final_names(folder: Path) -> list[str]:
    """Names a receiver would pick up (not dot-files)."""
    return [name for name in names_in(folder) if not name.startswith(".")]


class TcpProxy:
    """Forwards a local port to sshd; can cut connections after N bytes or black-hole them."""

    def __init__(self, target_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._target = target_port
        self.cut_after: int | None = None
        self.cuts_left = 0
        self.blackhole = threading.Event()
        self.connections = 0
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next(self, after_bytes: int, connections: int = 1) -> None:
        """Cut the next ``connections`` connections once the client has sent ``after_bytes``."""
        self.cut_after, self.cuts_left = after_bytes, connections

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        for sock in self._sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._sockets.append(client)
            if self.blackhole.is_set():
                continue  # accepted, then silence: nothing ever comes back
            cut = None
            if self.cut_after is not None and self.cuts_left > 0:
                self.cuts_left -= 1
                cut = self.cut_after
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._sockets.append(upstream)
            for sock in (client, upstream):
                # Without it, Nagle holds back small SSH packets until an ACK (~40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, cut: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if self.blackhole.is_set():
                    # Stop reading and forwarding: the peer's buffers fill, nothing comes back.
                    self._closing.wait()
                    return
                if not data:
                    break
                if cut is not None and sent + len(data) >= cut:
                    target.sendall(data[: cut - sent])
                    break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy(sshd_server: SshdServer) -> Iterator[TcpProxy]:
    forwarding = TcpProxy(sshd_server.port)
    try:
        yield forwarding
    finally:
        forwarding.close()


def run_bounded(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread; return its result or exception, failing if it never returns."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["result"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_SECONDS)
    assert not worker.is_alive(), "the call hung instead of giving up"
    return outcome["result"]


# --- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 261_120, 3_000_001])
def test_publish_puts_the_exact_bytes_under_the_final_name(
    session: SftpDropzoneSession, dropzone: Path, make_file: Callable[[int], Path], size: int
) -> None:
    source = make_file(size)

    path = session.publish(str(dropzone), "acme_d1.json", source, size)

    assert path == str(dropzone / "acme_d1.json")
    assert (dropzone / "acme_d1.json").read_bytes() == source.read_bytes()
    assert names_in(dropzone) == ["acme_d1.json"]  # no temp file left


def test_rsa_key_and_fingerprint_pin_and_known_hosts_prefix_are_accepted(
    sshd_server: SshdServer, dropzone: Path, make_file: Callable[[int], Path]
) -> None:
    source = make_file(1000)
    variants = {
        "rsa.json": {"private_key_ref": sshd_server.key_ref("acme", sshd_server.rsa_key)},
        "fp.json": {"host_key": sshd_server.host_key_fingerprint},
        "prefixed.json": {
            "host_key": f"[127.0.0.1]:{sshd_server.port},other {sshd_server.host_key_line} c"
        },
    }
    for name, overrides in variants.items():
        config = sshd_server.connector_config("acme", str(dropzone), "/acks", **overrides)
        opened = open_sftp_session(config, SETTINGS)
        try:
            opened.publish(str(dropzone), name, source, 1000)
        finally:
            opened.close()
    assert names_in(dropzone) == sorted(variants)


def test_private_key_from_an_environment_variable(
    sshd_server: SshdServer,
    dropzone: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_file: Callable[[int], Path],
) -> None:
    monkeypatch.setenv("ORDERFLOW_SECRET_ACME_SFTP_KEY", sshd_server.ed25519_key.read_text())
    config = sshd_server.connector_config(
        "acme", str(dropzone), "/acks", private_key_ref="env:ORDERFLOW_SECRET_ACME_SFTP_KEY"
    )
    opened = open_sftp_session(config, SETTINGS)
    try:
        assert opened.publish(str(dropzone), "a.json", make_file(10), 10)
    finally:
        opened.close()


def test_one_session_carries_many_files_over_one_connection(
    sshd_server: SshdServer,
    dropzone: Path,
    proxy: TcpProxy,
    make_file: Callable[[int], Path],
) -> None:
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", port=proxy.port)
    sources = {f"acme_d{i:03d}.json": make_file(100 + i * 331) for i in range(60)}
    opened = open_sftp_session(config, SETTINGS)
    try:
        for name, source in sources.items():
            opened.publish(str(dropzone), name, source, source.stat().st_size)
    finally:
        opened.close()

    assert proxy.connections == 1
    assert names_in(dropzone) == sorted(sources)
    for name, source in sources.items():
        assert (dropzone / name).read_bytes() == source.read_bytes()


# --- host keys and credentials ----------------------------------------------------------------


def test_wrong_host_key_is_refused_naming_both_fingerprints(
    sshd_server: SshdServer, dropzone: Path
) -> None:
    config = sshd_server.connector_config(
        "acme", str(dropzone), "/acks", host_key=sshd_server.other_host_key_line
    )
    expected = parse_host_keys(sshd_server.other_host_key_line)[0].fingerprint

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    error = caught.value
    assert (error.code, error.transient) == (ErrorCode.HOST_KEY, False)
    assert expected in error.message
    assert sshd_server.host_key_fingerprint in error.message
    assert names_in(dropzone) == []


def test_wrong_fingerprint_is_refused(sshd_server: SshdServer, dropzone: Path) -> None:
    other = parse_host_keys(sshd_server.other_host_key_line)[0].fingerprint
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", host_key=other)

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    assert caught.value.code == ErrorCode.HOST_KEY
    assert sshd_server.host_key_fingerprint in caught.value.message


def test_missing_host_key_refuses_and_names_the_presented_key(
    sshd_server: SshdServer, dropzone: Path
) -> None:
    config = sshd_server.connector_config("acme", str(dropzone), "/acks")
    # ConnectorConfig itself refuses an sftp config without host_key; the session must too.
    object.__setattr__(config, "host_key", None)

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.HOST_KEY, False)
    assert "no host key is configured" in caught.value.message
    assert sshd_server.host_key_fingerprint in caught.value.message


def test_unreadable_host_key_setting_is_a_config_error(
    sshd_server: SshdServer, dropzone: Path
) -> None:
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", host_key="not a key")

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.CONFIG, False)


def test_key_the_server_does_not_accept_is_an_auth_error(
    sshd_server: SshdServer, dropzone: Path
) -> None:
    config = sshd_server.connector_config(
        "acme",
        str(dropzone),
        "/acks",
        private_key_ref=sshd_server.key_ref("acme", sshd_server.unauthorized_key),
    )

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.AUTH, False)


def test_broken_private_key_is_a_config_error_without_quoting_it(
    sshd_server: SshdServer, dropzone: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken_key"
    secret_text = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n"
    broken.write_text(secret_text + "-----END OPENSSH PRIVATE KEY-----\n")
    config = sshd_server.connector_config(
        "acme", str(dropzone), "/acks", private_key_ref=sshd_server.key_ref("acme", broken)
    )

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.CONFIG, False)
    assert "c2VjcmV0" not in str(caught.value)


# --- connection faults --------------------------------------------------------------------------


def test_server_down_is_a_transient_connection_error(
    sshd_server: SshdServer, dropzone: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", port=closed_port)

    with pytest.raises(ExportError) as caught:
        open_sftp_session(config, SETTINGS)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.CONNECTION, True)


def test_upload_cut_once_is_repeated_on_a_new_connection(
    sshd_server: SshdServer,
    dropzone: Path,
    proxy: TcpProxy,
    make_file: Callable[[int], Path],
) -> None:
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", port=proxy.port)
    source = make_file(3_000_000)
    proxy.cut_next(after_bytes=1_000_000)  # the first connection dies a third into the upload
    opened = open_sftp_session(config, SETTINGS)
    try:
        opened.publish(str(dropzone), "acme_d1.json", source, 3_000_000)
    finally:
        opened.close()

    assert proxy.connections == 2
    assert names_in(dropzone) == ["acme_d1.json"]
    assert (dropzone / "acme_d1.json").read_bytes() == source.read_bytes()


def test_upload_cut_on_every_connection_fails_transient_without_a_final_file(
    sshd_server: SshdServer,
    dropzone: Path,
    proxy: TcpProxy,
    make_file: Callable[[int], Path],
) -> None:
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", port=proxy.port)
    source = make_file(3_000_000)
    proxy.cut_next(after_bytes=1_000_000, connections=3)
    opened = open_sftp_session(config, SETTINGS)  # connection 1, cut during the upload
    try:
        with pytest.raises(ExportError) as caught:
            opened.publish(str(dropzone), "acme_d1.json", source, 3_000_000)

        assert (caught.value.code, caught.value.transient) == (ErrorCode.CONNECTION, True)
        assert proxy.connections == 2  # the one repeat, then it gave up
        assert final_names(dropzone) == []

        # The next operation reconnects and removes the temp file the cut left behind.
        proxy.cuts_left = 0
        assert not opened.exists(str(dropzone), "acme_d1.json")
        assert names_in(dropzone) == []
    finally:
        opened.close()


def test_killed_server_session_reconnects_once_transparently(
    sshd_server: SshdServer,
    config: ConnectorConfig,
    dropzone: Path,
    make_file: Callable[[int], Path],
) -> None:
    before = sshd_server.session_pids()
    opened = open_sftp_session(config, SETTINGS)
    try:
        ours = sshd_server.session_pids() - before
        assert ours, "the session's sshd processes were not found"
        first, second = make_file(2000), make_file(300_000)
        opened.publish(str(dropzone), "acme_d1.json", first, 2000)

        sshd_server.kill_sessions(ours)
        opened.publish(str(dropzone), "acme_d2.json", second, 300_000)

        assert sshd_server.session_pids() - before - ours  # a new server session served it
    finally:
        opened.close()
    assert names_in(dropzone) == ["acme_d1.json", "acme_d2.json"]
    assert (dropzone / "acme_d2.json").read_bytes() == second.read_bytes()


def test_black_holed_connection_times_out(
    sshd_server: SshdServer,
    dropzone: Path,
    proxy: TcpProxy,
    make_file: Callable[[int], Path],
) -> None:
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", port=proxy.port)
    source = make_file(8_000_000)
    opened = open_sftp_session(config, FAST_TIMEOUTS)
    try:
        proxy.blackhole.set()

        error = run_bounded(
            lambda: opened.publish(str(dropzone), "acme_d1.json", source, 8_000_000)
        )

        assert isinstance(error, ExportError)
        assert (error.code, error.transient) == (ErrorCode.TIMEOUT, True)
        assert final_names(dropzone) == []
    finally:
        run_bounded(opened.close)


def test_black_holed_server_times_out_while_connecting(
    sshd_server: SshdServer, dropzone: Path, proxy: TcpProxy
) -> None:
    proxy.blackhole.set()
    config = sshd_server.connector_config("acme", str(dropzone), "/acks", port=proxy.port)

    error = run_bounded(lambda: open_sftp_session(config, FAST_TIMEOUTS))

    assert isinstance(error, ExportError)
    assert (error.code, error.transient) == (ErrorCode.TIMEOUT, True)


# --- server-side faults ---------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(dropzone: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted as a folder of the dropzone (needs root)."""
    folder = dropzone / "tiny"
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    require_component(mounted, "mounting a tmpfs needs root (and mount rights in the container)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_fails_and_leaves_no_file(
    session: SftpDropzoneSession, tiny_disk: Path, make_file: Callable[[int], Path]
) -> None:
    source = make_file(2_500_000)

    with pytest.raises(ExportError) as caught:
        session.publish(str(tiny_disk), "acme_d1.json", source, 2_500_000)

    assert caught.value.code in (ErrorCode.DISK_FULL, ErrorCode.SIZE_MISMATCH)
    assert names_in(tiny_disk) == []  # the temp file was removed too
    # The session survives: a file that fits still goes through.
    small = make_file(1000)
    session.publish(str(tiny_disk), "acme_d2.json", small, 1000)
    assert (tiny_disk / "acme_d2.json").read_bytes() == small.read_bytes()


@pytest.mark.parametrize("size", [5000, 2_000_000], ids=["refused-rename", "checked-first"])
def test_existing_final_name_is_never_replaced(
    session: SftpDropzoneSession, dropzone: Path, make_file: Callable[[int], Path], size: int
) -> None:
    (dropzone / "acme_d1.json").write_bytes(b"the ERP's copy")
    source = make_file(size)

    with pytest.raises(ExportError) as caught:
        session.publish(str(dropzone), "acme_d1.json", source, size)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.NAME_EXISTS, False)
    assert (dropzone / "acme_d1.json").read_bytes() == b"the ERP's copy"
    assert names_in(dropzone) == ["acme_d1.json"]


def test_missing_export_folder_is_a_config_error(
    session: SftpDropzoneSession, dropzone: Path, make_file: Callable[[int], Path]
) -> None:
    with pytest.raises(ExportError) as caught:
        session.publish(str(dropzone / "absent"), "acme_d1.json", make_file(10), 10)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.CONFIG, False)


def test_size_differing_from_the_expected_size_is_not_published(
    session: SftpDropzoneSession, dropzone: Path, make_file: Callable[[int], Path]
) -> None:
    source = make_file(1000)

    with pytest.raises(ExportError) as caught:
        session.publish(str(dropzone), "acme_d1.json", source, 999)

    assert caught.value.code == ErrorCode.SIZE_MISMATCH
    assert names_in(dropzone) == []


def test_short_file_on_the_server_is_never_published(
    session: SftpDropzoneSession,
    dropzone: Path,
    make_file: Callable[[int], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that silently keeps less than was sent (as paramiko's pipelined writes let a full
    disk do): the size check on the server's own stat stops the rename."""
    source = make_file(600_000)
    real_send_write = SftpStream.send_write

    def lossy_send_write(self: SftpStream, handle: bytes, offset: int, data: bytes) -> int:
        if offset + len(data) == 600_000:
            data = data[:-1]  # the last byte never reaches the disk
        return real_send_write(self, handle, offset, data)

    monkeypatch.setattr(SftpStream, "send_write", lossy_send_write)

    with pytest.raises(ExportError) as caught:
        session.publish(str(dropzone), "acme_d1.json", source, 600_000)

    assert (caught.value.code, caught.value.transient) == (ErrorCode.SIZE_MISMATCH, True)
    assert names_in(dropzone) == []


def test_publish_asks_the_server_to_fsync(
    session: SftpDropzoneSession,
    dropzone: Path,
    make_file: Callable[[int], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extended: list[str] = []
    real_send = SftpStream.send

    def spying_send(self: SftpStream, t: int, *args: Any) -> int:
        if t == CMD_EXTENDED:
            extended.append(args[0])
        return real_send(self, t, *args)

    monkeypatch.setattr(SftpStream, "send", spying_send)

    session.publish(str(dropzone), "acme_d1.json", make_file(1000), 1000)

    assert extended == ["fsync@openssh.com"]


def test_a_watcher_never_sees_a_partial_file_under_a_final_name(
    session: SftpDropzoneSession, dropzone: Path, make_file: Callable[[int], Path]
) -> None:
    sources = {f"acme_d{i:02d}.json": make_file(40_000 + i * 37_129) for i in range(25)}
    sizes = {name: source.stat().st_size for name, source in sources.items()}
    stop = threading.Event()
    seen: set[str] = set()
    partial: list[tuple[str, int]] = []

    def watch() -> None:
        while not stop.is_set():
            for entry in os.scandir(dropzone):
                if entry.name.startswith("."):
                    continue
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue
                seen.add(entry.name)
                if size != sizes.get(entry.name):
                    partial.append((entry.name, size))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for name, source in sources.items():
            session.publish(str(dropzone), name, source, sizes[name])
    finally:
        stop.set()
        watcher.join(HANG_GUARD_SECONDS)

    assert partial == []
    assert len(seen) > 1  # it really watched files appear
    assert names_in(dropzone) == sorted(sources)


# --- the other DropzoneSession operations -------------------------------------------------------


def test_stale_temp_sweep_removes_only_our_old_temp_files(
    session: SftpDropzoneSession, dropzone: Path, caplog: pytest.LogCaptureFixture
) -> None:
    two_hours_ago = time.time() - 7200
    files = {
        temp_filename("acme_old.json"): two_hours_ago,  # ours, stale: removed
        temp_filename("acme_new.json"): time.time(),  # ours, fresh: kept
        ".someone-elses.tmp": two_hours_ago,  # not ours: kept
        "acme_old.json": two_hours_ago,  # a published file: kept
    }
    for name, mtime in files.items():
        (dropzone / name).write_bytes(b"x")
        os.utime(dropzone / name, (mtime, mtime))

    with caplog.at_level(logging.INFO, logger="orderflow_exports.adapters.sftp"):
        removed = session.sweep_stale_temps(str(dropzone), timedelta(hours=1))

    assert removed == [temp_filename("acme_old.json")]
    assert f"removed stale temp file {removed[0]}" in caplog.text
    assert names_in(dropzone) == sorted(set(files) - set(removed))
    assert session.sweep_stale_temps(str(dropzone / "absent"), timedelta(hours=1)) == []


def test_move_file_is_idempotent_and_never_overwrites(
    session: SftpDropzoneSession, dropzone: Path
) -> None:
    (dropzone / "ack.json").write_bytes(b"first")

    moved = session.move_file(str(dropzone), "ack.json", "processed")
    again = session.move_file(str(dropzone), "ack.json", "processed")

    assert moved == again == str(dropzone / "processed" / "ack.json")
    assert (dropzone / "processed" / "ack.json").read_bytes() == b"first"

    (dropzone / "ack.json").write_bytes(b"second")  # a new file of the same name
    second = session.move_file(str(dropzone), "ack.json", "processed")

    assert second == str(dropzone / "processed" / "ack.json.1")
    assert (dropzone / "processed" / "ack.json").read_bytes() == b"first"
    assert (dropzone / "processed" / "ack.json.1").read_bytes() == b"second"

    with pytest.raises(ExportError) as caught:
        session.move_file(str(dropzone), "never-there.json", "processed")
    assert caught.value.code == ErrorCode.IO


def test_list_read_write_and_exists(session: SftpDropzoneSession, dropzone: Path) -> None:
    (dropzone / "b.json").write_bytes(b"bee")
    (dropzone / "a.json").write_bytes(b"a" * 100)
    (dropzone / "sub").mkdir()

    assert session.list_files(str(dropzone)) == ["a.json", "b.json"]
    # A missing ack folder is a fault to report, never "no acks".
    with pytest.raises(ExportError, match="does not exist") as missing:
        session.list_files(str(dropzone / "absent"))
    assert missing.value.code == ErrorCode.CONFIG
    assert session.read_file(str(dropzone), "b.json", max_bytes=3) == b"bee"
    with pytest.raises(ExportError) as caught:
        session.read_file(str(dropzone), "a.json", max_bytes=99)
    assert caught.value.code == ErrorCode.IO
    assert session.exists(str(dropzone), "a.json")
    assert not session.exists(str(dropzone), "c.json")

    path = session.write_file(str(dropzone / "error"), "a.json.reason.txt", b"bad ack")
    session.write_file(str(dropzone / "error"), "a.json.reason.txt", b"bad ack, again")

    assert path == str(dropzone / "error" / "a.json.reason.txt")
    assert (dropzone / "error" / "a.json.reason.txt").read_bytes() == b"bad ack, again"
    assert names_in(dropzone / "error") == ["a.json.reason.txt"]
