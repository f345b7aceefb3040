"""The real ``dagster-webserver`` and ``dagster-daemon`` for tests, on a temporary instance.

Each service runs in its own process group (it starts code servers and run workers of its own)
with ``DAGSTER_HOME``, ``ORDERFLOW_DATABASE_URL`` and ``ORDERFLOW_EXPORT_STORE`` of the test. It
is stopped by its PID: SIGTERM to its process group, SIGKILL after a grace period. Output goes to
a log file whose tail the tests print when something is wrong.

The instance config of a test home is the production ``dagster.yaml`` with SQLite storage instead
of PostgreSQL (:func:`write_instance_config`), so run queue and run retry settings are the ones
production uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pytest
import yaml

from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.demo import prepare_database
from orderflow_exports_tests.support.network import free_port
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PRODUCTION_INSTANCE_CONFIG = REPO_ROOT / "dagster.yaml"
WORKSPACE = REPO_ROOT / "workspace.yaml"
ARTIFACTS = REPO_ROOT / "test-artifacts"

_STOP_GRACE_SECONDS = 20.0
T = TypeVar("T")


def instance_config(*, run_retries: bool = True) -> dict[str, Any]:
    """Production's ``dagster.yaml`` with the embedded SQLite storage instead of PostgreSQL."""
    config: dict[str, Any] = yaml.safe_load(PRODUCTION_INSTANCE_CONFIG.read_text())
    config.pop("storage", None)
    if not run_retries:
        config["run_retries"] = {"enabled": False}
    return config


def write_instance_config(home: Path, *, run_retries: bool = True) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(run_retries=run_retries)))


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    alive: Callable[[], str | None] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` (a hang bound).

    ``alive`` returns an explanation when a process the wait depends on is gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if alive is not None and (dead := alive()):
            pytest.fail(f"gave up waiting for {what}: {dead}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s", pytrace=False)
        time.sleep(interval)


@dataclass
class DagsterService:
    """One running Dagster process (webserver or daemon) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"--- {self.name} log ({self.log_path}) ---\n{text[-chars:]}"

    def dead(self) -> str | None:
        code = self.process.poll()
        return None if code is None else f"{self.name} exited with {code}\n{self.log_tail()}"

    def stop(self) -> None:
        """SIGTERM to the service's process group, SIGKILL if it is still there after a grace."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=_STOP_GRACE_SECONDS)
        # Children (code servers, run workers) may outlive the leader: the group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()


def service_env(env: OrderflowEnv, **extra: str) -> dict[str, str]:
    child = dict(os.environ)
    child.update(
        DAGSTER_HOME=str(env.home),
        ORDERFLOW_DATABASE_URL=env.database_url,
        ORDERFLOW_EXPORT_STORE=str(env.store_root),
        PYTHONWARNINGS="ignore",
        DAGSTER_DISABLE_TELEMETRY="yes",
    )
    child.update(extra)
    return child


def _start(name: str, args: list[str], env: dict[str, str], log_path: Path) -> DagsterService:
    log = log_path.open("wb")
    process = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, stopped as a whole
    )
    return DagsterService(name=name, process=process, log_path=log_path, _log=log)


def start_webserver(
    env: OrderflowEnv, log_dir: Path, workspace: Path = WORKSPACE, **extra: str
) -> DagsterService:
    """``dagster-webserver -w WORKSPACE -h 127.0.0.1 -p PORT``, answering ``/server_info``."""
    port = free_port()
    service = _start(
        "dagster-webserver",
        [
            str(VENV_BIN / "dagster-webserver"),
            "-w",
            str(workspace),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        service_env(env, **extra),
        log_dir / "webserver.log",
    )
    service.url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the webserver",
            lambda: _answers(f"{service.url}/server_info"),
            timeout=90,
            alive=service.dead,
        )
        # /server_info answers before the code location is loaded.
        wait_for(
            "the code location in the webserver",
            lambda: _location_loaded(service),
            timeout=90,
            alive=service.dead,
        )
    except BaseException:
        service.stop()
        raise
    return service


def start_daemon(
    env: OrderflowEnv, log_dir: Path, workspace: Path = WORKSPACE, **extra: str
) -> DagsterService:
    """``dagster-daemon run -w WORKSPACE`` (sensors, run queue, backfills, run retries)."""
    return _start(
        "dagster-daemon",
        [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(workspace)],
        service_env(env, **extra),
        log_dir / "daemon.log",
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def graphql(service: DagsterService, query: str, variables: dict[str, Any] | None = None) -> Any:
    """POST a GraphQL document to the webserver; the ``data`` of the answer."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{service.url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise AssertionError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


_LOCATIONS = """
query {
  workspaceOrError {
    ... on Workspace {
      locationEntries { name loadStatus locationOrLoadError { __typename } }
    }
  }
}
"""


def _location_loaded(service: DagsterService) -> bool:
    try:
        entries = graphql(service, _LOCATIONS)["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, OSError, KeyError):
        return False
    if any(e["locationOrLoadError"]["__typename"] == "PythonError" for e in entries):
        raise AssertionError(f"code location failed to load\n{service.log_tail()}")
    return bool(entries) and all(
        e["loadStatus"] == "LOADED"
        and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        for e in entries
    )


def set_nux_seen(service: DagsterService) -> None:
    """Dismiss the "Join the Dagster community" dialog for this instance."""
    assert graphql(service, "mutation { setNuxSeen }")["setNuxSeen"] is True


@contextlib.contextmanager
def module_orderflow_env(root: Path, *, run_retries: bool = True) -> Iterator[OrderflowEnv]:
    """An embedded environment (SQLite, local folders) shared by a module's tests and services.

    The instance config is :func:`instance_config`; this process's environment points at it
    for as long as the context is open, so in-process runs and the services share everything.
    """
    home = root / "dagster_home"
    write_instance_config(home, run_retries=run_retries)
    url = f"sqlite:///{root / 'orderflow.db'}"
    store_root = root / "store"
    engine = make_engine(url)
    prepare_database(engine)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        patch.setenv("ORDERFLOW_DATABASE_URL", url)
        patch.setenv("ORDERFLOW_EXPORT_STORE", str(store_root))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield OrderflowEnv(
                home=home,
                database_url=url,
                engine=engine,
                instance=instance,
                dropzones=root / "dropzones",
                store_root=store_root,
            )
    engine.dispose()


def artifacts_dir(name: str) -> Path:
    """``test-artifacts/<name>/`` in the repository (gitignored), emptied first."""
    folder = ARTIFACTS / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    return folder
