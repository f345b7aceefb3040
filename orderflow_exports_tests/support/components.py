"""How tests deal with a component missing on a developer's machine.

Locally a test that needs an absent component (sshd, PostgreSQL, Chromium) skips with the reason
printed; in CI (``CI=true``) the same situation is a failure, so nothing can be silently skipped.
"""

from __future__ import annotations

import os

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_component(available: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a component a test needs is missing."""
    if available:
        return
    if running_in_ci():
        pytest.fail(f"required component missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)
