"""A run that stalls mid-publish, is force-terminated and then goes on never makes a second copy.

Real processes: run 1 is ``dagster job execute`` of a code location that SIGSTOPs its own process
at the chosen point (``support/stall_injection.py``); the operator's "Force termination" is
``instance.report_run_canceled``; run 2 of the same partition runs in process; then run 1 gets
SIGCONT. Both the local dropzone and the SFTP one (the real test sshd) are covered, each stalled
before its claim on the rename is taken and after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import (
    REPO_ROOT,
    job_execute_args,
    subprocess_env,
)
from orderflow_exports_tests.support.sshd import SshdServer
from orderflow_exports_tests.support.stall_injection import STALL_AT_ENV, STALL_POINTS

# Only guards against a hang; nothing here measures speed.
HANG_GUARD_SECONDS = 120.0


def _start_stalling_run(env: OrderflowEnv, key: str, point: str) -> subprocess.Popen[str]:
    args = job_execute_args(
        env,
        "export_drafts_job",
        {"dagster/partition": key},
        module="orderflow_exports_tests.support.stall_injection",
    )
    return subprocess.Popen(
        args,
        env=subprocess_env(env, **{STALL_AT_ENV: point}),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _is_stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _wait_until_stopped(process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not _is_stopped(process.pid):
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"run 1 ended ({process.returncode}) without stalling:\n{output[-4000:]}")
        assert time.monotonic() < deadline, "run 1 never reached its stall point"
        time.sleep(0.05)


def _order_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".json"))


def _temp_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def _archived(env: OrderflowEnv) -> list[Path]:
    return sorted(path for path in env.store_root.rglob("*") if path.is_file())


@pytest.fixture(params=["local", "sftp"])
def dropzone(request: pytest.FixtureRequest, orderflow_env: OrderflowEnv, tmp_path: Path) -> Path:
    """acme's export folder: a local folder, or a folder on the real test sshd."""
    if request.param == "local":
        env = orderflow_env
        env.add_local_connector("acme")
        folder = env.outbox("acme")
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    sshd: SshdServer = request.getfixturevalue("sshd_server")
    folder = sshd.root / f"stall-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    (sshd.root / f"{folder.name}-acks").mkdir()  # beside the outbox, never inside it
    orderflow_env.configs.upsert(sshd.connector_config("acme", str(folder), f"{folder}-acks"))
    return folder


@pytest.mark.slow  # a real child process
@pytest.mark.parametrize("point", STALL_POINTS)
def test_a_stalled_run_that_lost_its_claim_never_renames(
    orderflow_env: OrderflowEnv, dropzone: Path, point: str
) -> None:
    env = orderflow_env
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=2000))
    stalled = _start_stalling_run(env, key, point)
    try:
        _wait_until_stopped(stalled)
        [pending] = env.exports(key)
        assert pending.status is ExportStatus.PENDING
        assert _temp_files(dropzone) and not _order_files(dropzone)
        assert (pending.rename_started_at is not None) == (point == "renaming")

        # The operator force-terminates the stuck run; a new run of the partition takes over.
        run_1 = env.instance.get_run_by_id(pending.dagster_run_id or "")
        assert run_1 is not None
        env.instance.report_run_canceled(run_1)
        run_2 = env.run_export([key])
        assert run_2.success
        first, second = env.exports(key)
        assert first.status is ExportStatus.FAILED and first.error_code == "INTERRUPTED"
        assert second.status is ExportStatus.SENT and second.attempt == 2
        assert _order_files(dropzone) == [second.filename]

        os.kill(stalled.pid, signal.SIGCONT)
        output, _ = stalled.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        if stalled.poll() is None:
            stalled.kill()
            stalled.wait()

    assert stalled.returncode != 0, output[-4000:]
    assert "lost its claim" in output and first.id in output, output[-4000:]
    assert _order_files(dropzone) == [second.filename]  # exactly one order file
    assert _temp_files(dropzone) == []
    assert [(r.id, r.status) for r in env.exports(key)] == [
        (first.id, ExportStatus.FAILED),
        (second.id, ExportStatus.SENT),
    ]
    assert env.exports(key)[0] == first  # run 1 changed nothing of the row it lost
    assert _archived(env) == [Path(second.storage_key)]
    assert Path(second.storage_key).read_bytes() == (dropzone / second.filename).read_bytes()
    canceled = env.instance.get_run_by_id(first.dagster_run_id or "")
    assert canceled is not None and canceled.status is not dg.DagsterRunStatus.SUCCESS
