"""The step-retry delay of ``export_json``: read when the Definitions are built, checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orderflow_exports.defs.settings import (
    DEFAULT_EXPORT_RETRY_DELAY_SECONDS,
    EXPORT_RETRY_DELAY_ENV,
    export_retry_delay,
)


def test_unset_or_blank_means_the_production_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXPORT_RETRY_DELAY_ENV, raising=False)
    assert export_retry_delay() == DEFAULT_EXPORT_RETRY_DELAY_SECONDS == 2.0
    monkeypatch.setenv(EXPORT_RETRY_DELAY_ENV, "  ")
    assert export_retry_delay() == 2.0


def test_a_number_of_seconds_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPORT_RETRY_DELAY_ENV, "0.5")
    assert export_retry_delay() == 0.5
    monkeypatch.setenv(EXPORT_RETRY_DELAY_ENV, "0")
    assert export_retry_delay() == 0.0


@pytest.mark.parametrize("raw", ["abc", "-1", "301", "nan", "inf", "2s"])
def test_anything_else_stops_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(EXPORT_RETRY_DELAY_ENV, raw)
    with pytest.raises(ValueError, match=rf"{EXPORT_RETRY_DELAY_ENV}=.*expected seconds"):
        export_retry_delay()


@pytest.mark.slow
def test_the_definitions_carry_the_delay_of_their_environment() -> None:
    """A fresh interpreter, as a code server is: the asset's policy follows the variable."""
    probe = (
        "from orderflow_exports import defs;"
        "spec = defs.get_assets_def('export_json');"
        "print(spec.op.retry_policy.delay, spec.op.retry_policy.max_retries)"
    )
    env_delay = {EXPORT_RETRY_DELAY_ENV: "0.7", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **env_delay},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["0.7", "3"]
