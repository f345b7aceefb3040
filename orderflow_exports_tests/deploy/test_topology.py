"""The production topology as separate processes, driven end to end, with restarts mid-way.

Started through ``scripts/topology.sh`` exactly as an operator (or a systemd unit) starts them:

- the code location's gRPC server (``dagster api grpc``), whose children are the run workers;
- ``dagster-daemon`` and ``dagster-webserver`` loading it through ``workspace.grpc.yaml``;
- the Dagster instance is the shipped ``dagster.yaml`` on a fresh PostgreSQL database (queued
  runs, concurrency per dropzone host, run retries, run monitoring); OrderFlow's tables in
  another fresh PostgreSQL database; the export archive on a moto S3 server; two SFTP hosts: the
  session's sshd on 127.0.0.1 and, where Linux network namespaces are allowed, a second sshd in
  a namespace of its own behind a veth pair (a real network boundary, its own address).

The story: drafts of two orgs (one per SFTP host) are approved; ``approved_drafts_sensor`` queues
one run per host; while a run is in flight the code server is killed (SIGKILL) and the daemon
stopped (SIGTERM); more drafts are approved while they are down; both start again. Then the ERP
writes an ack per file and ``erp_ack_sensor`` applies them. Nothing may be lost or sent twice:
one file per draft in its dropzone, one archived object per draft with the same bytes, one
attempt per draft, every one ACKED.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from sqlalchemy.engine import make_url

from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.demo import SampleDraft, insert_drafts, prepare_database
from orderflow_exports.domain.endpoints import DROPZONE_HOST_TAG
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.dagster_services import (
    DagsterService,
    graphql,
    wait_for,
)
from orderflow_exports_tests.support.moto_s3 import S3Bucket
from orderflow_exports_tests.support.network import free_port
from orderflow_exports_tests.support.processes import REPO_ROOT, VENV_BIN
from orderflow_exports_tests.support.sshd import SshdServer, sshd_binary

TOPOLOGY = REPO_ROOT / "scripts" / "topology.sh"
PRODUCTION_INSTANCE_CONFIG = REPO_ROOT / "dagster.yaml"
# Bounds on hangs, not expectations: the story took 76 s on this 2-core machine and ~4 min with
# several other suites running; the sensors' intervals (30 s, 60 s) are most of it.
STEP_TIMEOUT = 240.0


@dataclass
class ErpHost:
    """Where one org's SFTP dropzone lives: address, port, and how it was reached."""

    host: str
    port: int
    description: str


@contextlib.contextmanager
def netns_sshd(server: SshdServer, workdir: Path) -> Iterator[ErpHost | None]:
    """A second sshd (same keys and users) inside a network namespace of its own.

    Yields None (and prints why) when namespaces cannot be made here; the story then uses
    a second name of the loopback server as the second dropzone host.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("netns: not root or no `ip` command; second host is `localhost` on loopback")
        yield None
        return
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"oft-{tag}", f"ofh{tag}", f"ofn{tag}"
    octet = int(tag[:2], 16) % 250 + 1
    host_ip, ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    setup = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
        ["ip", "link", "set", ns_if, "netns", ns],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if],
        ["ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up"],
        ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
    ]
    process: subprocess.Popen[bytes] | None = None
    try:
        for command in setup:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                print(
                    f"netns: `{' '.join(command)}` refused ({done.stderr.strip()}); "
                    "second host is `localhost` on loopback"
                )
                yield None
                return
        config = workdir / "sshd_config_netns"
        lines = []
        for line in (server.workdir / "sshd_config").read_text().splitlines():
            if line.startswith(("Port ", "ListenAddress ", "PidFile ")):
                continue
            lines.append(line)
        lines += ["Port 22", f"ListenAddress {ns_ip}", f"PidFile {workdir / 'sshd-netns.pid'}"]
        config.write_text("\n".join(lines) + "\n")
        binary = sshd_binary()
        assert binary is not None
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, binary, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "sshd-netns.log").open("wb"),
        )
        wait_for(
            f"sshd in namespace {ns} at {ns_ip}:22",
            lambda: _banner(ns_ip, 22),
            timeout=30,
            alive=lambda: None if process.poll() is None else "sshd exited",
        )
        yield ErpHost(ns_ip, 22, f"sshd in network namespace {ns} at {ns_ip} (veth {host_if})")
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)


def _banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as probe:
            return probe.recv(4) == b"SSH-"
    except OSError:
        return False


@pytest.fixture
def dagster_pg_env(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    """A fresh database for the Dagster instance; the ``DAGSTER_PG_*`` variables pointing at it."""
    name = f"oft_topology_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_admin_url)
    try:
        yield {
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": name,
        }
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Topology:
    """The three services of scripts/topology.sh, each its own process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.services: dict[str, DagsterService] = {}
        self.retired: list[DagsterService] = []  # killed ones: their groups may hold run workers
        self._starts: dict[str, int] = {}

    def start(self, name: str) -> DagsterService:
        count = self._starts[name] = self._starts.get(name, 0) + 1
        log_path = self.logs / f"{name}-{count}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            ["bash", str(TOPOLOGY), name],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        service = DagsterService(name=name, process=process, log_path=log_path, _log=log)
        self.services[name] = service
        return service

    def kill_leader(self, name: str, sig: signal.Signals) -> None:
        """Signal the service's own process only (``exec`` made it the script's PID)."""
        service = self.services.pop(name)
        service.process.send_signal(sig)
        service.process.wait(timeout=60)
        self.retired.append(service)

    def logs_tail(self) -> str:
        return "\n".join(s.log_tail(3000) for s in [*self.retired, *self.services.values()])

    def stop_all(self) -> None:
        for service in [*self.services.values(), *self.retired]:
            service.stop()


def _wait_code_server(topology: Topology, port: int) -> None:
    service = topology.services["code-server"]
    wait_for(
        "the code server's gRPC health check",
        lambda: (
            subprocess.run(
                [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                capture_output=True,
                env=topology.env,
                timeout=60,
            ).returncode
            == 0
        ),
        timeout=STEP_TIMEOUT,
        interval=1.0,
        alive=service.dead,
    )


_LOCATION = """
query {
  workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus displayMetadata { key value }
    locationOrLoadError { __typename }
  } } }
}
"""


def _location_via_grpc(web: DagsterService, port: int) -> dict[str, str] | None:
    try:
        entries = graphql(web, _LOCATION)["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, AssertionError):
        return None
    for entry in entries:
        if entry["locationOrLoadError"]["__typename"] == "RepositoryLocation":
            return {m["key"]: m["value"] for m in entry["displayMetadata"]}
    return None


def _export_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name="export_drafts_job")))


def _rows(ledger: SqlExportLedger, orgs: list[str]) -> list[ExportRecord]:
    return [r for org in orgs for r in ledger.list(org_id=org, limit=10_000)]


def _write_ack(ack_dir: Path, record: ExportRecord) -> None:
    body = {
        "export_id": record.id,
        "status": "ACKED",
        "erp_order_number": f"SO-{record.draft_order_id}",
        "message": None,
        "errors": [],
        "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # Written aside and renamed, as an ERP should: the ack pass ignores *.tmp.
    partial = ack_dir / f"ack-{record.id}.json.tmp"
    partial.write_text(json.dumps(body))
    partial.rename(ack_dir / f"ack-{record.id}.json")


def _drafts(org: str, prefix: str, count: int) -> list[SampleDraft]:
    # Approved (and so updated) now, as OrderFlow core stamps them: the sensor reads changes
    # since its previous tick.
    now = datetime.now(UTC)
    return [
        SampleDraft(
            org, f"{org.upper()}-{prefix}-{n}", lines=3, approved_at=now + timedelta(milliseconds=n)
        )
        for n in range(count)
    ]


@pytest.mark.slow
def test_topology_end_to_end_with_code_server_and_daemon_restarts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_pg_env: dict[str, str],
    postgres_database: str,
    sshd_server: SshdServer,
    s3_bucket: S3Bucket,
) -> None:
    server = sshd_server
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The instance is the shipped file, not a test variant of it.
    shutil.copy(PRODUCTION_INSTANCE_CONFIG, home / "dagster.yaml")
    code_port, web_port = free_port(), free_port()
    store = f"s3://{s3_bucket.bucket}/exports"
    env = dict(os.environ)
    env.update(dagster_pg_env)
    env.update(
        DAGSTER_HOME=str(home),
        ORDERFLOW_DATABASE_URL=postgres_database,
        ORDERFLOW_EXPORT_STORE=store,
        AWS_ENDPOINT_URL=s3_bucket.endpoint_url,
        ORDERFLOW_CODE_SERVER_HOST="127.0.0.1",
        ORDERFLOW_CODE_SERVER_PORT=str(code_port),
        ORDERFLOW_WEBSERVER_PORT=str(web_port),
        ORDERFLOW_VENV_BIN=str(VENV_BIN),
        PYTHONWARNINGS="ignore",
        DAGSTER_DISABLE_TELEMETRY="yes",
    )
    for name, value in env.items():
        if name.startswith(("DAGSTER_", "ORDERFLOW_", "AWS_")):
            monkeypatch.setenv(name, value)

    engine = make_engine(postgres_database)
    prepare_database(engine)
    ledger = SqlExportLedger(engine)
    with contextlib.ExitStack() as stack:
        stack.callback(engine.dispose)
        second = stack.enter_context(netns_sshd(server, tmp_path))
        if second is None:
            # Two names of one server are two dropzone hosts to the exporter.
            second = ErpHost("localhost", server.port, "the loopback sshd named `localhost`")
        hosts = {"acme": ErpHost(server.host, server.port, "the loopback sshd"), "globex": second}
        print(f"dropzone hosts: {', '.join(f'{o}: {h.description}' for o, h in hosts.items())}")
        configs = SqlConnectorConfigs(engine)
        for org, erp in hosts.items():
            outbox, acks = (
                server.root / f"topo-{org}" / "outbox",
                server.root / f"topo-{org}" / "acks",
            )
            outbox.mkdir(parents=True)
            acks.mkdir(parents=True)
            configs.upsert(
                server.connector_config(org, str(outbox), str(acks), host=erp.host, port=erp.port)
            )
        first_batch = _drafts("acme", "A", 3) + _drafts("globex", "A", 3)
        insert_drafts(engine, first_batch)

        topology = Topology(env, tmp_path)
        stack.callback(topology.stop_all)
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))

        try:
            _run_story(topology, instance, ledger, engine, hosts, server, code_port, s3_bucket)
        except BaseException:
            print(topology.logs_tail())
            raise


def _run_story(
    topology: Topology,
    instance: dg.DagsterInstance,
    ledger: SqlExportLedger,
    engine: Any,
    hosts: dict[str, ErpHost],
    server: SshdServer,
    code_port: int,
    s3_bucket: S3Bucket,
) -> None:
    orgs = list(hosts)
    topology.start("code-server")
    _wait_code_server(topology, code_port)
    web = topology.start("webserver")
    daemon = topology.start("daemon")
    web.url = f"http://127.0.0.1:{topology.env['ORDERFLOW_WEBSERVER_PORT']}"
    # The webserver reaches the code location over gRPC, not by importing it.
    metadata = wait_for(
        "the webserver to load the location from the gRPC server",
        lambda: _location_via_grpc(web, code_port),
        timeout=STEP_TIMEOUT,
        alive=web.dead,
    )
    assert metadata.get("port") == str(code_port), metadata

    # 1. The sensor queues one run per dropzone host; kill everything once one is in flight.
    def in_flight() -> list[dg.DagsterRun] | None:
        runs = _export_runs(instance)
        started = [r for r in runs if r.status is dg.DagsterRunStatus.STARTED]
        starting = [r for r in runs if r.status is dg.DagsterRunStatus.STARTING]
        return runs if started and not starting else None

    wait_for("an export run in flight", in_flight, timeout=STEP_TIMEOUT, alive=daemon.dead)
    topology.kill_leader("code-server", signal.SIGKILL)
    topology.kill_leader("daemon", signal.SIGTERM)
    states_at_kill = {r.run_id: r.status.value for r in _export_runs(instance)}
    print(f"runs when the code server was killed and the daemon stopped: {states_at_kill}")

    # 2. Approvals while the sensor is down are picked up after the restart.
    insert_drafts(engine, _drafts("acme", "B", 2) + _drafts("globex", "B", 2))
    topology.start("code-server")
    _wait_code_server(topology, code_port)
    daemon = topology.start("daemon")
    expected = {
        f"{o}:{o.upper()}-{p}-{n}" for o in orgs for p, c in (("A", 3), ("B", 2)) for n in range(c)
    }

    def all_sent() -> list[ExportRecord] | None:
        rows = _rows(ledger, orgs)
        settled = {f"{r.org_id}:{r.draft_order_id}" for r in rows if r.status is ExportStatus.SENT}
        return rows if settled >= expected else None

    def runs_done() -> bool:
        return all(r.is_finished for r in _export_runs(instance))

    rows = wait_for("every draft SENT", all_sent, timeout=STEP_TIMEOUT, alive=daemon.dead)
    wait_for("every export run finished", runs_done, timeout=STEP_TIMEOUT, alive=daemon.dead)

    # 3. The ERP acks each file; erp_ack_sensor (every 60 s) applies them.
    for record in rows:
        _write_ack(server.root / f"topo-{record.org_id}" / "acks", record)

    def all_acked() -> list[ExportRecord] | None:
        rows = _rows(ledger, orgs)
        return rows if rows and all(r.status is ExportStatus.ACKED for r in rows) else None

    rows = wait_for("every export ACKED", all_acked, timeout=STEP_TIMEOUT, alive=daemon.dead)

    # Nothing lost, nothing twice: one attempt per draft, ACKED, one file, one archived copy.
    keys = sorted(f"{r.org_id}:{r.draft_order_id}" for r in rows)
    assert keys == sorted(expected), keys
    assert {r.attempt for r in rows} == {1}
    archived = s3_bucket.keys()
    assert len(archived) == len(expected), archived
    for org in orgs:
        outbox = server.root / f"topo-{org}" / "outbox"
        mine = [r for r in rows if r.org_id == org]
        assert sorted(os.listdir(outbox)) == sorted(r.filename for r in mine)
        for record in mine:
            key = record.storage_key.removeprefix(f"s3://{s3_bucket.bucket}/")
            stored = s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=key)["Body"].read()
            assert stored == (outbox / record.filename).read_bytes()
        processed = server.root / f"topo-{org}" / "acks" / "processed"
        assert len(os.listdir(processed)) == len(mine)

    # Every run went through the queue, tagged with its dropzone host, and ended well.
    runs = _export_runs(instance)
    assert runs and all(r.status is dg.DagsterRunStatus.SUCCESS for r in runs), [
        (r.run_id, r.status) for r in runs
    ]
    # One dropzone host per org here: the runs carry one tag value per host, never mixed.
    host_tags = {r.tags.get(DROPZONE_HOST_TAG) for r in runs}
    assert None not in host_tags and len(host_tags) == len(hosts), host_tags
    for run in runs:
        assert instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED), run.run_id
        # Launched by the code server of the grpc_server workspace, as a process of its own.
        origin = run.remote_job_origin
        assert origin is not None
        assert origin.repository_origin.code_location_origin.location_name == "orderflow_exports"
