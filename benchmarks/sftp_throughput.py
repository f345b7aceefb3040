"""SFTP dropzone throughput: our paramiko transport against OpenSSH's ``sftp -b``, same run.

Starts a private sshd on 127.0.0.1 (the test support module's), then measures, interleaved so that
both tools see the same machine state, and prints medians and ratios:

(a) one 100 MB file, a new connection each time, temp name then rename;
(b) 1,000 files of 20 KB over one connection, temp name then rename for each.

Modes, each ours against the ``sftp -b`` batch doing the same:

- durable: ours as shipped (fsync@openssh.com) against ``put -f`` + ``rename -l``;
- plain: ours with ``fsync=False`` against ``put`` + ``rename -l``;
- reference (b only): ours with ``fsync=False`` against ``put`` + plain ``rename``.

``rename -l`` is the plain SFTP rename our publish uses, which never replaces a file (OpenSSH
does it as link + unlink). sftp's default ``rename`` is posix-rename, which replaces an existing
file (one rename(2), cheaper on a journalling file system): the reference line shows that cost.
A ratio above 1 means ours is faster.

    python benchmarks/sftp_throughput.py [--rounds 7] [--big-mb 100] [--files 1000] [--file-kb 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
from _common import quiet

if TYPE_CHECKING:
    from orderflow_exports.adapters.sftp.settings import SftpSettings
    from orderflow_exports_tests.support.sshd import SshdServer

TARGET_BIG = 1.10
TARGET_SMALL = 1.20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="trials per tool and mode (>= 5)")
    parser.add_argument("--big-mb", type=int, default=100, help="size of the big file, MB")
    parser.add_argument("--files", type=int, default=1000, help="number of small files")
    parser.add_argument("--file-kb", type=int, default=20, help="size of each small file, KB")
    parser.add_argument(
        "--dropzone",
        type=Path,
        default=None,
        help="folder the server writes into (default: a temp folder); e.g. /dev/shm to take the "
        "disk, and so fsync, out of the measurement",
    )
    args = parser.parse_args()
    quiet()
    # Imported after quiet(): importing the package loads the Dagster definitions, which warn.
    from orderflow_exports_tests.support.sshd import start_sshd, stop_sshd

    if shutil.which("sftp") is None:
        print("sftp (OpenSSH client) is not installed", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="sftp-bench-"))
    server = start_sshd(workdir / "sshd")
    os.environ["ORDERFLOW_SECRET_DIRS"] = str(server.secrets_root)
    try:
        bench = Bench(server, workdir, args.dropzone)
        print(
            f"SFTP throughput: {sshd_version()} on 127.0.0.1, paramiko {paramiko.__version__}, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, dropzone on "
            f"{filesystem_of(bench.out)}"
        )
        big = workdir / "big.bin"
        big.write_bytes(os.urandom(args.big_mb * 1_000_000))
        small = workdir / "small.json"
        small.write_bytes(os.urandom(args.file_kb * 1000))

        print(
            f"\n(a) one {args.big_mb} MB file, new connection each time, temp + rename; "
            f"median of {args.rounds}, interleaved"
        )
        big_ratios = {}
        for mode in ("durable", "plain"):
            fsync = mode == "durable"
            ours, theirs = bench.interleave(
                args.rounds,
                lambda fsync=fsync: bench.ours_big(big, fsync=fsync),
                lambda fsync=fsync: bench.sftp_big(big, fsync=fsync),
            )
            big_ratios[mode] = theirs / ours
            mb = args.big_mb
            print(
                f"    {mode:9} ours {ours:6.3f} s ({mb / ours:6.1f} MB/s)   "
                f"sftp -b {_batch_label(fsync, True):17} {theirs:6.3f} s "
                f"({mb / theirs:6.1f} MB/s)   ratio {big_ratios[mode]:.2f}x"
            )

        print(
            f"\n(b) {args.files} x {args.file_kb} KB over one connection, temp + rename each; "
            f"median of {args.rounds}, interleaved (connection set-up included for both)"
        )
        small_ratios = {}
        for mode, fsync, legacy in (
            ("durable", True, True),
            ("plain", False, True),
            ("reference", False, False),
        ):
            ours, theirs = bench.interleave(
                args.rounds,
                lambda fsync=fsync: bench.ours_small(small, args.files, fsync=fsync),
                lambda fsync=fsync, legacy=legacy: bench.sftp_small(
                    small, args.files, fsync=fsync, no_replace=legacy
                ),
            )
            small_ratios[mode] = theirs / ours
            print(
                f"    {mode:9} ours {args.files / ours:7.0f} files/s   "
                f"sftp -b {_batch_label(fsync, legacy):17} {args.files / theirs:7.0f} files/s   "
                f"ratio {small_ratios[mode]:.2f}x"
            )

        print(f"\ntargets: (a) >= {TARGET_BIG:.2f}x, (b) >= {TARGET_SMALL:.2f}x")
        for label, ratios, target in (
            ("(a)", big_ratios, TARGET_BIG),
            ("(b)", small_ratios, TARGET_SMALL),
        ):
            for mode, ratio in ratios.items():
                if mode == "reference":
                    continue  # not the same semantics: shown for comparison only
                verdict = "met" if ratio >= target else "NOT met"
                print(f"    {label} {mode:9} {ratio:.2f}x  {verdict}")
    finally:
        stop_sshd(server)
        if args.dropzone is not None:
            shutil.rmtree(args.dropzone / f"sftp-bench-{os.getpid()}", ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


class Bench:
    """The measured actions of both tools against one sshd."""

    def __init__(self, server: SshdServer, workdir: Path, dropzone: Path | None = None) -> None:
        from orderflow_exports.adapters.sftp.session import open_sftp_session
        from orderflow_exports.adapters.sftp.settings import SftpSettings

        self._default_settings = SftpSettings()
        self._open = open_sftp_session
        self.server = server
        self.workdir = workdir
        self.out = (dropzone or server.root) / f"sftp-bench-{os.getpid()}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text(f"[{server.host}]:{server.port} {server.host_key_line}\n")
        self.config = server.connector_config("bench", str(self.out), str(self.out / "acks"))
        self.trial = 0

    def interleave(
        self, rounds: int, ours: Callable[[], float], theirs: Callable[[], float]
    ) -> tuple[float, float]:
        """Median seconds of each, alternating which one goes first."""
        ours_times, their_times = [], []
        for index in range(rounds):
            pair = [(ours, ours_times), (theirs, their_times)]
            for action, times in pair if index % 2 == 0 else reversed(pair):
                times.append(action())
        return statistics.median(ours_times), statistics.median(their_times)

    def _folder(self) -> Path:
        """A fresh folder per trial; the previous one is removed first (outside the timing)."""
        for old in self.out.glob("trial-*"):
            shutil.rmtree(old, ignore_errors=True)
        # Flush what earlier trials left dirty, so it is not written back during the next one.
        os.sync()
        self.trial += 1
        folder = self.out / f"trial-{self.trial}"
        folder.mkdir()
        return folder

    def _settings(self, fsync: bool) -> SftpSettings:
        return replace(self._default_settings, fsync=fsync)

    def ours_big(self, source: Path, *, fsync: bool) -> float:
        folder = self._folder()
        size = source.stat().st_size
        started = time.perf_counter()
        session = self._open(self.config, self._settings(fsync))
        session.publish(str(folder), "big.json", source, size)
        session.close()
        elapsed = time.perf_counter() - started
        assert (folder / "big.json").stat().st_size == size
        return elapsed

    def sftp_big(self, source: Path, *, fsync: bool) -> float:
        folder = self._folder()
        flag = "-f " if fsync else ""
        batch = f"put {flag}{source} {folder}/.big.json.tmp\n"
        batch += f"rename -l {folder}/.big.json.tmp {folder}/big.json\n"
        elapsed = self._sftp(batch)
        assert (folder / "big.json").stat().st_size == source.stat().st_size
        return elapsed

    def ours_small(self, source: Path, count: int, *, fsync: bool) -> float:
        folder = str(self._folder())
        size = source.stat().st_size
        started = time.perf_counter()
        session = self._open(self.config, self._settings(fsync))
        for index in range(count):
            session.publish(folder, f"f{index:05d}.json", source, size)
        session.close()
        elapsed = time.perf_counter() - started
        assert len(os.listdir(folder)) == count
        return elapsed

    def sftp_small(self, source: Path, count: int, *, fsync: bool, no_replace: bool) -> float:
        folder = self._folder()
        flag = "-f " if fsync else ""
        rename = "rename -l" if no_replace else "rename"
        lines = []
        for index in range(count):
            name = f"f{index:05d}.json"
            lines.append(f"put {flag}{source} {folder}/.{name}.tmp")
            lines.append(f"{rename} {folder}/.{name}.tmp {folder}/{name}")
        elapsed = self._sftp("\n".join(lines) + "\n")
        assert len(os.listdir(folder)) == count
        return elapsed

    def _sftp(self, batch: str) -> float:
        batch_file = self.workdir / "batch.txt"
        batch_file.write_text(batch)
        server = self.server
        command = [
            "sftp",
            "-q",
            "-b",
            str(batch_file),
            "-i",
            str(server.ed25519_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-P",
            str(server.port),
            f"{server.username}@{server.host}",
        ]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"sftp -b failed: {result.stderr.decode(errors='replace')}")
        return elapsed


def _batch_label(fsync: bool, no_replace: bool) -> str:
    return ("put -f" if fsync else "put") + (" + rename -l" if no_replace else " + rename")


def sshd_version() -> str:
    result = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return (result.stderr or result.stdout).split(",")[0].strip()


def filesystem_of(path: Path) -> str:
    result = subprocess.run(
        ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=False
    )
    lines = result.stdout.split()
    return lines[-1] if len(lines) > 1 else "unknown"


if __name__ == "__main__":
    sys.exit(main())
