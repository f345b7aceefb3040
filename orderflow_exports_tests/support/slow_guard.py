"""pytest plugin: a test that starts a Dagster or orderflow process must be marked ``slow``.

The fast lane (``pytest -m "not slow"``) is only fast if every test that pays for a process start
(``dagster-daemon``, ``dagster-webserver``, ``dagster job execute``, the ``orderflow-exports`` CLI,
a fresh interpreter importing the code location, a benchmark script) carries the marker. Rather
than trust each module to say so, every unmarked test runs with ``subprocess.Popen`` guarded:
starting such a process fails the test with the command named. Servers shared per session
(sshd, moto) are started before this function-scoped guard and are not such processes anyway.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any

import pytest

_PROGRAMS = ("dagster", "orderflow-exports")
UNGUARDED_POPEN_INIT = subprocess.Popen.__init__
_WORDS = ("orderflow_exports", "benchmarks/")


def starts_a_slow_process(args: str | bytes | Sequence[Any]) -> bool:
    """Whether a Popen command line runs Dagster, the project's CLI or code, or a benchmark."""
    argv = [args] if isinstance(args, str | bytes) else list(args)
    words = [a.decode() if isinstance(a, bytes) else str(a) for a in argv]
    if not words:
        return False
    if PurePath(words[0].split()[0] if words[0].strip() else words[0]).name.startswith(_PROGRAMS):
        return True
    return any(word in text for text in words for word in _WORDS)


@pytest.fixture(autouse=True)
def _processes_only_in_slow_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    original = UNGUARDED_POPEN_INIT

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if starts_a_slow_process(args):
            pytest.fail(
                f"{request.node.nodeid} starts a process ({args!r}) but is not marked slow: "
                "add @pytest.mark.slow (or pytestmark) so the fast lane stays fast",
                pytrace=False,
            )
        original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield
