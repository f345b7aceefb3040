"""No Dagster Preview/Beta warning lines from our code location in the processes people read.

The processes run with ``PYTHONWARNINGS=default`` (every warning printed once per place), so
only the filters in ``orderflow_exports/quiet_warnings.py`` can keep the lines away. A control
run shows that the same kind of definition does warn without them.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_exports_tests.support.dagster_services import (
    REPO_ROOT,
    VENV_BIN,
    module_orderflow_env,
    service_env,
    start_daemon,
    wait_for,
)
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

pytestmark = pytest.mark.slow

NOISE = re.compile(r"PreviewWarning|BetaWarning")
LOUD = {"PYTHONWARNINGS": "default"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrderflowEnv]:
    with module_orderflow_env(tmp_path_factory.mktemp("quiet")) as env:
        yield env


def _run(env: OrderflowEnv, args: list[str], tmp_path: Path) -> str:
    done = subprocess.run(
        args,
        cwd=REPO_ROOT,
        env=service_env(env, **LOUD),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout + done.stderr


def test_the_detector_sees_the_warnings_without_our_filters(
    env: OrderflowEnv, tmp_path: Path
) -> None:
    # The same Beta parameter our assets use, defined without importing orderflow_exports.
    code = (
        "import dagster as dg\n"
        "@dg.asset(backfill_policy=dg.BackfillPolicy.single_run())\n"
        "def a() -> None: ...\n"
    )
    output = _run(env, [str(VENV_BIN / "python"), "-c", code], tmp_path)
    assert NOISE.search(output), output


def test_cli_help_is_quiet(env: OrderflowEnv, tmp_path: Path) -> None:
    output = _run(env, [str(VENV_BIN / "orderflow-exports"), "--help"], tmp_path)
    assert "usage" in output.lower()
    assert not NOISE.search(output), output


def test_dagster_job_execute_is_quiet(env: OrderflowEnv, tmp_path: Path) -> None:
    config = tmp_path / "in_process.yaml"
    config.write_text("execution:\n  config:\n    in_process: {}\n")
    output = _run(
        env,
        [
            str(VENV_BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "orderflow_exports",
            "-j",
            "process_acks_job",
            "-c",
            str(config),
        ],
        tmp_path,
    )
    assert "RUN_SUCCESS" in output or "process_acks_job" in output, output[-3000:]
    assert not NOISE.search(output), output[-3000:]


def test_daemon_is_quiet(env: OrderflowEnv, tmp_path: Path) -> None:
    daemon = start_daemon(env, tmp_path, **LOUD)
    try:
        # Until the sensors have ticked: the code location was loaded and evaluated.
        wait_for(
            "a sensor tick in the daemon log",
            lambda: "erp_ack_sensor" in daemon.log_path.read_text(errors="replace"),
            timeout=180,
            interval=1.0,
            alive=daemon.dead,
        )
    finally:
        daemon.stop()
    log = daemon.log_path.read_text(errors="replace")
    assert not NOISE.search(log), log[-4000:]
