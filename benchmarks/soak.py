"""Soak test: the real daemon, code server and simulated ERP at a steady rate over SFTP and S3.

Everything is real and local: a private OpenSSH sshd on 127.0.0.1 (one user key per org), a moto
S3 server in a child process for the archive, SQLite for OrderFlow's tables, an embedded Dagster
instance with production's ``dagster.yaml`` (run queue, retries, monitoring) minus its storage,
``dagster-daemon run -w workspace.yaml`` (which starts the code server) and
``orderflow-exports erp-sim`` as its own process. Drafts are approved at ``--rate`` per minute,
round robin over ``--orgs`` orgs; ``approved_drafts_sensor`` requests the runs, the simulator
takes the files and acks them, ``erp_ack_sensor`` applies the acks.

Every minute it records RSS and open file descriptors of the daemon and of the code server
(from /proc), the SSH sessions open on the server (sshd's per-connection processes), the size of
the Dagster instance's files, the sensor ticks of that minute (durations from the tick storage),
and approval→SENT and SENT→ACKED latencies (p50/p95) of the exports that moved in that minute.

It passes when, after a drain of at most ``--drain`` seconds once drafts stop:
- nothing is lost or sent twice: every draft is in its org's ``taken/`` folder exactly once,
  and has exactly one ``erp_export`` row, ACKED;
- memory and descriptors are flat after warm-up (the first ``WARMUP_FRACTION`` of the run, at
  least one sample): the highest RSS of each process in the second half of the samples after
  warm-up is at most ``RSS_BOUND_MIB`` MiB above the highest in the first half, and likewise
  its open descriptors by at most ``FD_BOUND``; SSH sessions never
  exceed ``3 × orgs + 2`` (one per org each for the simulator, a run and an ack tick);
- between 1 and ``MAX_CODE_SERVERS`` code servers at every sample (RSS and descriptors are those
  of the largest one);
- latencies hold: every minute's p95 approval→SENT ≤ ``--sent-p95-bound`` (default
  ``SENT_P95_BOUND_S``) s and p95 SENT→ACKED ≤ ``--ack-p95-bound`` (``ACK_P95_BOUND_S``) s,
  drain included (a backlog built under traffic shows there). Each sample also records the
  machine's 1-minute load average, since other work on the machine moves these figures.

It prints a table, writes ``soak.json`` (every sample) and ``soak.png`` (one panel per series,
see ``PANELS``) into ``--out``, and exits 1 when a criterion fails.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 20] [--orgs 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    MiB,
    insert_drafts,
    machine_line,
    make_env,
    moto_server,
    new_bucket,
    quiet,
    temp_root,
)

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

WARMUP_FRACTION = 1 / 3
RSS_BOUND_MIB = 50.0
FD_BOUND = 20
SENT_P95_BOUND_S = 150.0
ACK_P95_BOUND_S = 150.0
# The daemon was seen running up to 3 code servers at once (a new one started before the old one
# exits on its missed heartbeat); more than that would be servers piling up.
MAX_CODE_SERVERS = 3
# The simulator polls every 2 s and answers 1 s after taking a file.
SIM_INTERVAL_S = 2.0
SIM_DELAY_S = 1.0


@dataclass
class Sample:
    """One minute's figures."""

    minute: int
    drafts: int
    sent: int
    acked: int
    daemon_rss_mib: float
    daemon_fds: int
    code_server_rss_mib: float
    code_server_fds: int
    code_servers: int
    load1: float
    ssh_sessions: int
    instance_mib: float
    ticks: int
    tick_p50_s: float | None
    tick_max_s: float | None
    sent_p50_s: float | None
    sent_p95_s: float | None
    ack_p50_s: float | None
    ack_p95_s: float | None


@dataclass
class Outcome:
    """The pass criteria and what was found."""

    drafts: int = 0
    taken_once: int = 0
    taken_twice: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_acked: list[str] = field(default_factory=list)
    extra_rows: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --- /proc ----------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(c) for c in text.split())
    return found


def descendants(pid: int) -> list[int]:
    seen: list[int] = []
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.append(child)
                todo.append(child)
    return seen


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def code_servers(daemon_pid: int) -> list[int]:
    """The daemon's gRPC code servers: its own children, not their forks or run workers."""
    return [
        p
        for p in _children(daemon_pid)
        if " api grpc" in cmdline(p) or " code-server start" in cmdline(p)
    ]


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / MiB


# --- statistics and the ledger --------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _utc(value: Any) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def ledger_rows(engine: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from orderflow_exports.adapters.sql.tables import draft_order, erp_export

    query = select(
        erp_export.c.org_id,
        erp_export.c.draft_order_id,
        erp_export.c.status,
        erp_export.c.sent_at,
        erp_export.c.acked_at,
        draft_order.c.approved_at,
    ).join(
        draft_order,
        (draft_order.c.id == erp_export.c.draft_order_id)
        & (draft_order.c.org_id == erp_export.c.org_id),
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def sensor_ticks(instance: Any, after: float) -> list[tuple[str, float]]:
    """(sensor name, duration) of every finished tick that started after ``after``."""
    from dagster._core.definitions.run_request import InstigatorType as Kind

    found: list[tuple[str, float]] = []
    for state in instance.all_instigator_state(instigator_type=Kind.SENSOR):
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after):
            if tick.end_timestamp is not None:
                found.append((state.instigator_name, tick.end_timestamp - tick.timestamp))
    return found


# --- the plot -------------------------------------------------------------------------------------

# (title, sample fields drawn in it); colours per field, in order: blue, red, green, orange.
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("RSS MiB: daemon, code server", ("daemon_rss_mib", "code_server_rss_mib")),
    ("open fds: daemon, code server", ("daemon_fds", "code_server_fds")),
    ("SSH sessions", ("ssh_sessions",)),
    ("instance MiB", ("instance_mib",)),
    ("sensor tick s: p50, max", ("tick_p50_s", "tick_max_s")),
    (
        "latency s: approval->SENT p50, p95, SENT->ACKED p50, p95",
        ("sent_p50_s", "sent_p95_s", "ack_p50_s", "ack_p95_s"),
    ),
)
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14))


def write_png(path: Path, width: int, height: int, pixels: bytearray) -> None:
    """An RGB PNG from raw rows (``pixels`` is height × width × 3 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    stride = width * 3
    raw = b"".join(b"\0" + bytes(pixels[y * stride : (y + 1) * stride]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def plot(samples: Sequence[Sample], path: Path) -> None:
    """One panel per entry of ``PANELS``, stacked; each panel scaled from 0 to its maximum."""
    width, panel_h, margin = 640, 120, 10
    height = len(PANELS) * (panel_h + margin) + margin
    pixels = bytearray(b"\xff" * (width * height * 3))

    def put(x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < width and 0 <= y < height:
            i = (y * width + x) * 3
            pixels[i : i + 3] = bytes(colour)

    def line(x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            x = round(x0 + (x1 - x0) * s / steps)
            y = round(y0 + (y1 - y0) * s / steps)
            put(x, y, colour)
            put(x, y + 1, colour)

    for n, (_, names) in enumerate(PANELS):
        top = margin + n * (panel_h + margin)
        left, right, bottom = margin, width - margin, top + panel_h
        for x in range(left, right + 1):
            put(x, top, (200, 200, 200))
            put(x, bottom, (120, 120, 120))
        for y in range(top, bottom + 1):
            put(left, y, (120, 120, 120))
            put(right, y, (200, 200, 200))
        values = [getattr(s, k) for s in samples for k in names if getattr(s, k) is not None]
        top_value = max(values, default=1.0) or 1.0
        count = max(len(samples) - 1, 1)
        for colour, name in zip(COLOURS, names, strict=False):
            points = [
                (
                    left + round((right - left) * i / count),
                    bottom - round((panel_h - 4) * getattr(s, name) / top_value),
                )
                for i, s in enumerate(samples)
                if getattr(s, name) is not None
            ]
            for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
                line(x0, y0, x1, y1, colour)
            for x, y in points:
                for dx in (-1, 0, 1):
                    for dy in (-1, 0, 1):
                        put(x + dx, y + dy, colour)
    write_png(path, width, height, pixels)


# --- processes ------------------------------------------------------------------------------------


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, stopped (group and all) afterwards."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)


class DraftFeeder(threading.Thread):
    """Approves one draft every ``60 / rate`` seconds, round robin over the orgs."""

    def __init__(self, engine: Any, orgs: Sequence[str], rate: float, until: float) -> None:
        super().__init__(daemon=True)
        self.engine, self.orgs, self.interval, self.until = engine, orgs, 60.0 / rate, until
        self.inserted: list[tuple[str, str]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        from orderflow_exports.demo import SampleDraft

        start = time.monotonic()
        n = 0
        try:
            while True:
                due = start + n * self.interval
                if due >= self.until:
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                org = self.orgs[n % len(self.orgs)]
                draft = f"S-{n + 1:06d}"
                now = datetime.now(UTC)
                insert_drafts(self.engine, [SampleDraft(org, draft, lines=20, approved_at=now)])
                self.inserted.append((org, draft))
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


# --- the run --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of traffic")
    parser.add_argument("--rate", type=float, default=20.0, help="drafts approved per minute")
    parser.add_argument("--orgs", type=int, default=5, help="orgs, all on the one SFTP server")
    parser.add_argument("--drain", type=float, default=240.0, help="max seconds to settle after")
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="seconds per sample")
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "soak")
    parser.add_argument(
        "--sent-p95-bound", type=float, default=SENT_P95_BOUND_S, help="seconds, every minute"
    )
    parser.add_argument(
        "--ack-p95-bound", type=float, default=ACK_P95_BOUND_S, help="seconds, every minute"
    )
    args = parser.parse_args(argv)
    quiet()

    def interrupted(signum: int, _: object) -> None:
        # Unwinds through the context managers, so that every child process is stopped.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)

    from orderflow_exports_tests.support.dagster_services import write_instance_config
    from orderflow_exports_tests.support.sshd import sshd_missing_reason, start_sshd, stop_sshd

    missing = sshd_missing_reason()
    if missing:
        print(f"soak: cannot run: {missing}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with temp_root("soak-") as root:
        server = start_sshd(root / "sshd")
        os.environ["ORDERFLOW_SECRET_DIRS"] = str(server.secrets_root)
        try:
            with moto_server(root / "moto.log") as moto:
                bucket = new_bucket(moto)
                os.environ["AWS_ENDPOINT_URL"] = moto.endpoint_url
                env = make_env(root, store=f"s3://{bucket}/exports")
                write_instance_config(env.home)
                orgs = [f"soak{n:02d}" for n in range(1, args.orgs + 1)]
                configs = {}
                for org in orgs:
                    outbox, acks = server.root / org / "outbox", server.root / org / "acks"
                    outbox.mkdir(parents=True)
                    acks.mkdir(parents=True)
                    config = server.connector_config(org, str(outbox), str(acks))
                    env.upsert_connector(config)
                    configs[org] = config
                child_env = dict(
                    os.environ, PYTHONWARNINGS="ignore", DAGSTER_DISABLE_TELEMETRY="yes"
                )
                return soak(args, env, server, configs, child_env, root)
        finally:
            stop_sshd(server)


def soak(
    args: argparse.Namespace,
    env: Any,
    server: Any,
    configs: dict[str, Any],
    child_env: dict[str, str],
    root: Path,
) -> int:
    daemon_cmd = [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
    sim_cmd = [
        str(VENV_BIN / "orderflow-exports"),
        "erp-sim",
        "--interval",
        str(SIM_INTERVAL_S),
        "--delay",
        str(SIM_DELAY_S),
        "--reject-ratio",
        "0",
        "--silent-ratio",
        "0",
    ]
    samples: list[Sample] = []
    outcome = Outcome()
    started = time.monotonic()
    # The instance's storage is created here first: a daemon and its code server creating the
    # same SQLite files at once can stamp two schema versions and refuse to start.
    with (
        env.instance() as instance,
        process(daemon_cmd, child_env, args.out / "daemon.log") as daemon,
        process(sim_cmd, child_env, args.out / "erp-sim.log") as sim,
    ):
        wait_for_code_server(daemon)
        traffic_end = time.monotonic() + args.minutes * 60
        feeder = DraftFeeder(env.engine, list(configs), args.rate, traffic_end)
        feeder.start()
        window_start = time.time()
        minute = 0
        settled_at: float | None = None
        while True:
            next_sample = started + (minute + 1) * args.sample_seconds
            time.sleep(max(0.0, next_sample - time.monotonic()))
            for child, name in ((daemon, "dagster-daemon"), (sim, "erp-sim")):
                if child.poll() is not None:
                    outcome.failures.append(f"{name} exited with {child.returncode}")
            if outcome.failures:
                break
            minute += 1
            now = time.time()
            sample = take_sample(
                minute, instance, env, server, daemon.pid, feeder, window_start, now
            )
            window_start = now
            samples.append(sample)
            print_row(sample, header=minute == 1)
            if time.monotonic() >= traffic_end and not feeder.is_alive():
                done = all_acked(env.engine, len(feeder.inserted))
                if done or time.monotonic() > traffic_end + args.drain:
                    settled_at = time.monotonic() if done else None
                    break
        feeder.join(timeout=5)
        if feeder.error is not None:
            outcome.failures.append(f"draft feeder failed: {feeder.error!r}")
        if settled_at is None and not outcome.failures:
            outcome.failures.append(f"not settled within {args.drain:.0f} s after the traffic")
    judge(
        outcome,
        samples,
        feeder.inserted,
        env.engine,
        configs,
        args.orgs,
        args.sent_p95_bound,
        args.ack_p95_bound,
    )
    report = {
        "machine": machine_line(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "bounds": {
            "warmup_fraction": WARMUP_FRACTION,
            "rss_growth_mib": RSS_BOUND_MIB,
            "fd_growth": FD_BOUND,
            "ssh_sessions": 3 * args.orgs + 2,
            "code_servers": MAX_CODE_SERVERS,
            "sent_p95_s": args.sent_p95_bound,
            "ack_p95_s": args.ack_p95_bound,
        },
        "samples": [asdict(s) for s in samples],
        "outcome": asdict(outcome),
        "passed": not outcome.failures,
    }
    (args.out / "soak.json").write_text(json.dumps(report, indent=1))
    if samples:
        plot(samples, args.out / "soak.png")
    summary(outcome, samples, args)
    return 0 if not outcome.failures else 1


def wait_for_code_server(daemon: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}")
        if code_servers(daemon.pid):
            return
        time.sleep(1)
    raise RuntimeError("the daemon started no code server")


def take_sample(
    minute: int,
    instance: Any,
    env: Any,
    server: Any,
    daemon_pid: int,
    feeder: DraftFeeder,
    window_start: float,
    now: float,
) -> Sample:
    servers = code_servers(daemon_pid)
    rows = ledger_rows(env.engine)
    begin = datetime.fromtimestamp(window_start, UTC)
    end = datetime.fromtimestamp(now, UTC)
    sent_lat = [
        (_utc(r["sent_at"]) - _utc(r["approved_at"])).total_seconds()
        for r in rows
        if r["sent_at"] is not None and begin <= _utc(r["sent_at"]) < end
    ]
    ack_lat = [
        (_utc(r["acked_at"]) - _utc(r["sent_at"])).total_seconds()
        for r in rows
        if r["acked_at"] is not None
        and r["sent_at"] is not None
        and begin <= _utc(r["acked_at"]) < end
    ]
    ticks = [d for _, d in sensor_ticks(instance, window_start)]
    return Sample(
        minute=minute,
        drafts=len(feeder.inserted),
        sent=sum(1 for r in rows if r["sent_at"] is not None),
        acked=sum(1 for r in rows if r["status"] == "ACKED"),
        daemon_rss_mib=round(rss_mib(daemon_pid), 1),
        daemon_fds=open_fds(daemon_pid),
        # Per process: a leak grows one server; a second server during a replacement is not one.
        code_server_rss_mib=round(max((rss_mib(p) for p in servers), default=0.0), 1),
        code_server_fds=max((open_fds(p) for p in servers), default=0),
        code_servers=len(servers),
        load1=float(Path("/proc/loadavg").read_text().split()[0]),
        ssh_sessions=len(_children(server.pid)),
        instance_mib=round(folder_mib(env.home), 2),
        ticks=len(ticks),
        tick_p50_s=_round(percentile(ticks, 0.5)),
        tick_max_s=_round(max(ticks, default=None)),
        sent_p50_s=_round(percentile(sent_lat, 0.5)),
        sent_p95_s=_round(percentile(sent_lat, 0.95)),
        ack_p50_s=_round(percentile(ack_lat, 0.5)),
        ack_p95_s=_round(percentile(ack_lat, 0.95)),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def all_acked(engine: Any, expected: int) -> bool:
    rows = ledger_rows(engine)
    return sum(1 for r in rows if r["status"] == "ACKED") >= expected


def judge(
    outcome: Outcome,
    samples: Sequence[Sample],
    inserted: Sequence[tuple[str, str]],
    engine: Any,
    configs: dict[str, Any],
    orgs: int,
    sent_bound: float,
    ack_bound: float,
) -> None:
    """Fill ``outcome`` with what breaks the pass criteria (see the module docstring)."""
    outcome.drafts = len(inserted)
    at_erp: dict[tuple[str, str], int] = {}
    for org, config in configs.items():
        taken = Path(config.export_path) / "taken"
        for path in taken.glob("*.json") if taken.is_dir() else []:
            # {org}_{draft}_{created}_{export_id}.json; org ids here hold no "_".
            draft = path.name[len(org) + 1 :].split("_")[0]
            at_erp[(org, draft)] = at_erp.get((org, draft), 0) + 1
    rows: dict[tuple[str, str], list[str]] = {}
    for r in ledger_rows(engine):
        rows.setdefault((r["org_id"], r["draft_order_id"]), []).append(r["status"])
    for key in inserted:
        name = f"{key[0]}:{key[1]}"
        count = at_erp.get(key, 0)
        if count == 0:
            outcome.missing.append(name)
        elif count > 1:
            outcome.taken_twice.append(name)
        else:
            outcome.taken_once += 1
        statuses = rows.get(key, [])
        if len(statuses) > 1:
            outcome.extra_rows.append(f"{name}: {statuses}")
        if statuses != ["ACKED"]:
            outcome.not_acked.append(f"{name}: {statuses}")
    for label, items in (
        ("lost (never at the ERP)", outcome.missing),
        ("sent twice", outcome.taken_twice),
        ("more than one export row", outcome.extra_rows),
        ("not ACKED", outcome.not_acked),
    ):
        if items:
            outcome.failures.append(f"{len(items)} drafts {label}: {', '.join(items[:5])}")
    if not samples:
        outcome.failures.append("no samples")
        return
    warm = max(1, round(len(samples) * WARMUP_FRACTION))
    after = list(samples[warm:]) or list(samples[-1:])
    half = max(1, len(after) // 2)
    for field_name, bound, unit in (
        ("daemon_rss_mib", RSS_BOUND_MIB, "MiB"),
        ("code_server_rss_mib", RSS_BOUND_MIB, "MiB"),
        ("daemon_fds", FD_BOUND, "fds"),
        ("code_server_fds", FD_BOUND, "fds"),
    ):
        values = [getattr(s, field_name) for s in after]
        # Peaks against peaks: a sample can fall while a run is being launched.
        growth = max(values[-half:]) - max(values[:half])
        if growth > bound:
            outcome.failures.append(
                f"{field_name} grew by {growth:.1f} {unit} after warm-up (bound {bound})"
            )
    if any(not 1 <= s.code_servers <= MAX_CODE_SERVERS for s in samples):
        outcome.failures.append(
            f"code servers per sample: {[s.code_servers for s in samples]} "
            f"(expected 1 to {MAX_CODE_SERVERS})"
        )
    sessions = max(s.ssh_sessions for s in samples)
    if sessions > 3 * orgs + 2:
        outcome.failures.append(f"{sessions} SSH sessions open at once (bound {3 * orgs + 2})")
    traffic = [s for s in samples if s.sent_p95_s is not None]
    acked = [s for s in samples if s.ack_p95_s is not None]
    worst_sent = max((s.sent_p95_s or 0.0 for s in traffic), default=None)
    worst_ack = max((s.ack_p95_s or 0.0 for s in acked), default=None)
    if worst_sent is None or worst_ack is None:
        outcome.failures.append("no latencies recorded")
        return
    if worst_sent > sent_bound:
        outcome.failures.append(
            f"approval→SENT p95 reached {worst_sent:.1f} s (bound {sent_bound:g})"
        )
    if worst_ack > ack_bound:
        outcome.failures.append(f"SENT→ACKED p95 reached {worst_ack:.1f} s (bound {ack_bound:g})")


COLUMNS = (
    ("min", "minute", "{:>3}"),
    ("drafts", "drafts", "{:>6}"),
    ("sent", "sent", "{:>5}"),
    ("acked", "acked", "{:>5}"),
    ("dRSS", "daemon_rss_mib", "{:>6}"),
    ("dfd", "daemon_fds", "{:>4}"),
    ("csRSS", "code_server_rss_mib", "{:>6}"),
    ("csfd", "code_server_fds", "{:>4}"),
    ("cs", "code_servers", "{:>2}"),
    ("load", "load1", "{:>5}"),
    ("ssh", "ssh_sessions", "{:>3}"),
    ("instMiB", "instance_mib", "{:>7}"),
    ("ticks", "ticks", "{:>5}"),
    ("tick50", "tick_p50_s", "{:>6}"),
    ("tickmx", "tick_max_s", "{:>6}"),
    ("sent50", "sent_p50_s", "{:>6}"),
    ("sent95", "sent_p95_s", "{:>6}"),
    ("ack50", "ack_p50_s", "{:>6}"),
    ("ack95", "ack_p95_s", "{:>6}"),
)


def print_row(sample: Sample, *, header: bool) -> None:
    if header:
        print(" ".join(fmt.format(title) for title, _, fmt in COLUMNS), flush=True)
    values = []
    for _, name, fmt in COLUMNS:
        value = getattr(sample, name)
        values.append(fmt.format("-" if value is None else value))
    print(" ".join(values), flush=True)


def summary(outcome: Outcome, samples: Sequence[Sample], args: argparse.Namespace) -> None:
    print(machine_line())
    print(
        f"{outcome.drafts} drafts over {args.minutes:g} min at {args.rate:g}/min across "
        f"{args.orgs} orgs; {outcome.taken_once} at the ERP exactly once, "
        f"{len(outcome.taken_twice)} twice, {len(outcome.missing)} lost"
    )
    if samples:
        sent = [s.sent_p95_s for s in samples if s.sent_p95_s is not None]
        ack = [s.ack_p95_s for s in samples if s.ack_p95_s is not None]
        first, last = samples[0], samples[-1]
        print(
            f"daemon RSS {first.daemon_rss_mib} → {last.daemon_rss_mib} MiB, fds "
            f"{first.daemon_fds} → {last.daemon_fds}; code server RSS "
            f"{first.code_server_rss_mib} → {last.code_server_rss_mib} MiB, fds "
            f"{first.code_server_fds} → {last.code_server_fds}; SSH sessions max "
            f"{max(s.ssh_sessions for s in samples)}; instance {first.instance_mib} → "
            f"{last.instance_mib} MiB"
        )
        print(
            f"worst minute p95: approval→SENT {max(sent, default=0):.1f} s, "
            f"SENT→ACKED {max(ack, default=0):.1f} s; median tick "
            f"{statistics.median([s.tick_p50_s for s in samples if s.tick_p50_s] or [0]):.2f} s"
        )
    print(f"plot: {args.out / 'soak.png'}; samples: {args.out / 'soak.json'}")
    print("PASS" if not outcome.failures else "FAIL: " + "; ".join(outcome.failures))


if __name__ == "__main__":
    sys.exit(main())
