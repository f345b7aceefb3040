"""A private OpenSSH ``sshd`` on 127.0.0.1 for tests and benchmarks.

The server gets its own host key, user keys, ``sshd_config`` and port, so it never touches the
machine's ssh setup. Tests use the session-scoped ``sshd_server`` fixture (register this module with
``pytest_plugins``); scripts call :func:`start_sshd` and :func:`stop_sshd` directly.

Only public-key login is offered: password login would need a system user with a password, which a
test must not create. Without ``sshd`` the fixture skips locally and fails in CI
(:func:`~orderflow_exports_tests.support.components.require_component`).
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orderflow_exports.adapters.secrets import SECRET_DIRS_ENV
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.support.components import require_component
from orderflow_exports_tests.support.network import free_port

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class SshdServer:
    """A running private sshd and everything a client needs to reach it.

    ``root`` is an empty folder for dropzones; SFTP paths are absolute server paths, and since the
    server runs on this machine the tests can also check those folders directly.
    """

    host: str
    port: int
    username: str
    host_key_line: str
    host_key_fingerprint: str
    ed25519_key: Path
    rsa_key: Path
    unauthorized_key: Path
    other_host_key_line: str
    root: Path
    workdir: Path
    pid: int
    secrets_root: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def connector_config(
        self, org_id: str, export_path: str, ack_path: str, **overrides: Any
    ) -> ConnectorConfig:
        """An sftp ``ConnectorConfig`` for this server (ed25519 key login), with ``overrides``."""
        values: dict[str, Any] = {
            "org_id": org_id,
            "transport": "sftp",
            "export_path": export_path,
            "ack_path": ack_path,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "host_key": self.host_key_line,
            "private_key_ref": self.key_ref(org_id),
        }
        values.update(overrides)
        return ConnectorConfig(**values)

    def key_ref(self, org_id: str, key: Path | None = None) -> str:
        """``file:`` reference to a copy of ``key`` (default: the ed25519 user key) in org
        ``org_id``'s secret folder, ``secrets_root/<org_id>/`` (mode 0600, as a mount would be).

        Point ``ORDERFLOW_SECRET_DIRS`` at ``secrets_root`` (the ``sshd_server`` fixture does).
        """
        source = key or self.ed25519_key
        folder = self.secrets_root / org_id
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Named after the source path too: two sources with one file name stay two files.
        copy = folder / f"{source.name}-{hashlib.sha256(str(source).encode()).hexdigest()[:12]}"
        if not copy.exists():
            partial = folder / f".{source.name}.{os.getpid()}.tmp"
            partial.write_bytes(source.read_bytes())
            partial.chmod(0o600)
            partial.replace(copy)
        return f"file:{copy}"

    def session_pids(self) -> set[int]:
        """PIDs of the per-connection sshd processes (every descendant of the listener)."""
        return _descendants(self.pid)

    def kill_sessions(self, pids: set[int]) -> None:
        """SIGKILL the given per-connection processes, as a crashed or killed server would."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def sshd_binary() -> str | None:
    """Absolute path of sshd (it refuses to re-exec itself from a relative path)."""
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin")
    return str(Path(found).resolve()) if found else None


def sshd_missing_reason() -> str | None:
    """Why a private sshd cannot be started here, or None when it can."""
    if sshd_binary() is None:
        return "OpenSSH sshd is not installed (Debian: apt-get install openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed (Debian: apt-get install openssh-client)"
    return None


def start_sshd(workdir: Path, secrets_root: Path | None = None) -> SshdServer:
    """Generate keys and a config under ``workdir`` and start sshd on a free loopback port.

    Connector configs of the server reference copies of the user keys under ``secrets_root``
    (default ``workdir/secrets``), one folder per org, which must be a secret folder
    (``ORDERFLOW_SECRET_DIRS``) of whatever resolves them.
    """
    binary = sshd_binary()
    if binary is None:
        raise RuntimeError(sshd_missing_reason())
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # sshd checks its privilege-separation folder exists when started as root.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    host_key = _keygen(workdir / "ssh_host_ed25519_key", "ed25519")
    other_host_key = _keygen(workdir / "other_host_ed25519_key", "ed25519")
    ed25519_key = _keygen(workdir / "user_ed25519", "ed25519")
    rsa_key = _keygen(workdir / "user_rsa", "rsa")
    unauthorized_key = _keygen(workdir / "user_unauthorized", "ed25519")
    authorized = workdir / "authorized_keys"
    authorized.write_text(
        _public_line(ed25519_key) + "\n" + _public_line(rsa_key) + "\n", encoding="utf-8"
    )
    root = workdir / "dropzones"
    root.mkdir(exist_ok=True)
    username = getpass.getuser()

    last_error = ""
    # The free port is found by binding port 0 and releasing it; another process may take it in
    # between, so a failed start is tried again on a new port.
    for _attempt in range(3):
        port = free_port()
        config = _write_config(workdir, port, host_key, authorized, username)
        log_file = workdir / f"sshd-{port}.log"
        process = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file.open("wb"),
        )
        if _wait_for_banner(process, port):
            host_line = _public_line(host_key)
            return SshdServer(
                host="127.0.0.1",
                port=port,
                username=username,
                host_key_line=host_line,
                host_key_fingerprint=fingerprint_of(host_line),
                ed25519_key=ed25519_key,
                rsa_key=rsa_key,
                unauthorized_key=unauthorized_key,
                other_host_key_line=_public_line(other_host_key),
                root=root,
                workdir=workdir,
                pid=process.pid,
                process=process,
                secrets_root=secrets_root or workdir / "secrets",
            )
        _stop_process(process)
        last_error = log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(f"sshd did not start; its log ends with:\n{last_error}")


def stop_sshd(server: SshdServer) -> None:
    """Stop the listener (by its PID) and any connection processes it left."""
    children = server.session_pids()
    _stop_process(server.process)
    server.kill_sessions(children)


def fingerprint_of(public_line: str) -> str:
    """``SHA256:…`` of an OpenSSH public key line, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@pytest.fixture(scope="session", autouse=True)
def test_secret_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's secret folder, set as ``ORDERFLOW_SECRET_DIRS`` for every test.

    Runs in process, child processes and the sshd's connector configs all resolve secrets
    through it, as a deployment's mounted secret folder.
    """
    root = tmp_path_factory.mktemp("secrets")
    root.chmod(0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_DIRS_ENV, str(root))
        yield root


@pytest.fixture(scope="session")
def sshd_server(
    tmp_path_factory: pytest.TempPathFactory, test_secret_dirs: Path
) -> Iterator[SshdServer]:
    """A private sshd for the whole test session, stopped by PID at the end."""
    reason = sshd_missing_reason()
    require_component(reason is None, reason or "")
    server = start_sshd(tmp_path_factory.mktemp("sshd"), test_secret_dirs)
    try:
        yield server
    finally:
        stop_sshd(server)


def _keygen(path: Path, kind: str) -> Path:
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"orderflow-test-{path.name}"]
    if kind == "rsa":
        args += ["-b", "2048"]  # enough for a test key, and quick to generate
    subprocess.run([*args, "-f", str(path)], check=True, stdin=subprocess.DEVNULL)
    return path


def _public_line(private_key: Path) -> str:
    """``type base64`` of the key's ``.pub`` file, without its comment."""
    kind, blob = Path(f"{private_key}.pub").read_text(encoding="utf-8").split()[:2]
    return f"{kind} {blob}"


def _write_config(
    workdir: Path, port: int, host_key: Path, authorized: Path, username: str
) -> Path:
    config = workdir / "sshd_config"
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        f"AllowUsers {username}",
        "UsePAM no",
        # Keys live under a temp folder whose modes StrictModes would refuse.
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "Subsystem sftp internal-sftp",
        "UseDNS no",
        # Benchmarks open connections back to back; the default (10:30:100) drops some.
        "MaxStartups 100:30:200",
        "LogLevel ERROR",
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def _wait_for_banner(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as probe:
                if probe.recv(4) == b"SSH-":
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found
