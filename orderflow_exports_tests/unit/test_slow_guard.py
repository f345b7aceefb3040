"""The guard that keeps process-starting tests out of the fast lane recognises them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orderflow_exports_tests.support.slow_guard import UNGUARDED_POPEN_INIT, starts_a_slow_process


@pytest.mark.parametrize(
    "args",
    [
        ["/work/.venv/bin/dagster-daemon", "run", "-w", "workspace.yaml"],
        ["dagster", "job", "execute", "-m", "orderflow_exports", "-j", "export_drafts_job"],
        ["/usr/local/bin/orderflow-exports", "exports", "list"],
        [sys.executable, "-c", "from orderflow_exports import defs"],
        [sys.executable, "/repo/benchmarks/soak.py", "--minutes", "2"],
        "dagster-webserver -p 3000",
    ],
)
def test_dagster_and_orderflow_processes_are_slow(args: object) -> None:
    assert starts_a_slow_process(args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ["/usr/sbin/sshd", "-D", "-f", "/tmp/sshd_config"],
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "5000"],
        ["umount", "-l", "/tmp/outbox"],
        [],
    ],
)
def test_servers_and_system_tools_are_not(args: object) -> None:
    assert not starts_a_slow_process(args)  # type: ignore[arg-type]


def test_an_unmarked_test_that_starts_dagster_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test is unmarked too: lift its own guard so the inner session installs its own.
    monkeypatch.setattr(subprocess.Popen, "__init__", UNGUARDED_POPEN_INIT)
    pytester.makeconftest('pytest_plugins = ["orderflow_exports_tests.support.slow_guard"]')
    pytester.makeini("[pytest]\nmarkers =\n    slow: starts real subprocesses\n")
    pytester.makepyfile(
        """
        import subprocess, sys
        import pytest

        def test_unmarked():
            subprocess.run([sys.executable, "-c", "import orderflow_exports"], check=True)

        @pytest.mark.slow
        def test_marked():
            subprocess.run([sys.executable, "-c", "import orderflow_exports"], check=True)

        def test_unmarked_server_is_fine():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_unmarked*starts a process*not marked slow*"])
    assert subprocess.Popen.__init__ is UNGUARDED_POPEN_INIT  # each guard undoes itself
