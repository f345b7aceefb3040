"""Running the project's real commands as subprocesses (CLI, ``dagster job execute``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
IN_PROCESS_CONFIG = "execution:\n  config:\n    in_process: {}\n"


def subprocess_env(env: OrderflowEnv, **extra: str) -> dict[str, str]:
    """The test's environment (DAGSTER_HOME, database, store) for a child process."""
    child = dict(os.environ)
    child.update(
        DAGSTER_HOME=str(env.home),
        ORDERFLOW_DATABASE_URL=env.database_url,
        ORDERFLOW_EXPORT_STORE=str(env.store_root),
        PYTHONWARNINGS="ignore",
    )
    child.update(extra)
    return child


def run_command(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def job_execute_args(
    env: OrderflowEnv,
    job: str,
    tags: dict[str, str] | None = None,
    module: str = "orderflow_exports",
) -> list[str]:
    """``dagster job execute -m MODULE -j JOB`` with the in-process executor (and ``tags``)."""
    config = env.home / "in_process.yaml"
    config.write_text(IN_PROCESS_CONFIG)
    args = [str(VENV_BIN / "dagster"), "job", "execute", "-m", module, "-j", job, "-c", str(config)]
    if tags:
        args += ["--tags", json.dumps(tags)]
    return args


def dagster_job_execute(
    env: OrderflowEnv, job: str, tags: dict[str, str] | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``dagster job execute -m orderflow_exports -j JOB`` with the in-process executor."""
    return run_command(job_execute_args(env, job, tags), subprocess_env(env, **extra))


def orderflow_cli(env: OrderflowEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command([str(VENV_BIN / "orderflow-exports"), *args], subprocess_env(env))
