"""The Dagster UI with 20,000 draft partitions: the partitions page and the launch dialog stay
usable, and a "Failed and missing" backfill over all of them is cut into capped runs.

A real ``dagster-webserver`` on a temporary instance holding 20,000 ``approved_drafts``
partitions (no daemon: the backfill is created, not executed), headless Chromium through
Playwright. Each step's time is printed and a screenshot kept under
``test-artifacts/ui-scale/``; the generous timeouts only bound a freeze.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dagster._core.execution.backfill import BulkActionStatus

from orderflow_exports.defs.partitions import (
    APPROVED_DRAFTS_PARTITIONS_NAME,
    MAX_PARTITIONS_PER_BACKFILL_RUN,
)
from orderflow_exports_tests.support.components import require_component
from orderflow_exports_tests.support.dagster_services import (
    artifacts_dir,
    module_orderflow_env,
    set_nux_seen,
    start_webserver,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PARTITIONS = 20_000
STEP_TIMEOUT_MS = 120_000  # bounds a freeze (the issue saw 175 s at 100,000); not a target


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Any]]:
    require_component(
        shutil.which(CHROMIUM) is not None, f"Chromium not found at {CHROMIUM} (apt chromium)"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_component(False, "the playwright Python package is not installed")
        raise
    root = tmp_path_factory.mktemp("ui-scale")
    with module_orderflow_env(root) as env:
        keys = [f"acme:S-{n:05d}" for n in range(PARTITIONS)]
        for start in range(0, PARTITIONS, 5000):
            env.instance.add_dynamic_partitions(
                APPROVED_DRAFTS_PARTITIONS_NAME, keys[start : start + 5000]
            )
        web = start_webserver(env, root)
        try:
            set_nux_seen(web)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(STEP_TIMEOUT_MS)
                try:
                    yield env, web, page
                finally:
                    browser.close()
        finally:
            web.stop()


def test_partitions_page_and_launch_dialog_stay_usable_at_20000_partitions(
    scaled: tuple[Any, Any, Any],
) -> None:
    env, web, page = scaled
    shots = artifacts_dir("ui-scale")
    timings: dict[str, float] = {}

    def step(name: str, action: Any) -> None:
        start = time.monotonic()
        action()
        timings[name] = time.monotonic() - start
        page.screenshot(path=str(shots / f"{len(timings)}-{name}.png"))

    step(
        "partitions-page",
        lambda: (
            page.goto(f"{web.url}/assets/export_json?view=partitions"),
            page.get_by_text(re.compile(r"Missing \(20,?000\)")).first.wait_for(),
        ),
    )
    dialog = page.get_by_role("dialog")
    failed_and_missing = dialog.get_by_role("button", name="Failed and missing")

    def open_dialog() -> None:
        page.get_by_role("button", name="Materialize…").first.click()
        # Upstream was never materialized: Dagster asks to confirm first (FACTS: the UI).
        confirm = dialog.get_by_role("button", name="Confirm")
        failed_and_missing.or_(confirm).first.wait_for()
        if confirm.is_visible():
            confirm.click()

    try:
        step("open-dialog", open_dialog)
    except Exception:
        page.screenshot(path=str(shots / "open-dialog-failed.png"))
        raise
    step(
        "failed-and-missing",
        lambda: (
            failed_and_missing.click(),
            dialog.get_by_text(re.compile(r"20,?000 partitions")).first.wait_for(),
        ),
    )
    step(
        "launch-backfill",
        lambda: (
            dialog.get_by_role("button", name="Launch backfill").click(),
            page.get_by_text(re.compile(r"Created backfill [a-z0-9]+")).wait_for(),
        ),
    )
    print("UI timings at 20,000 partitions:", {k: round(v, 1) for k, v in timings.items()})

    [backfill] = env.instance.get_backfills()
    assert backfill.status is BulkActionStatus.REQUESTED
    subset = backfill.asset_backfill_data.target_subset
    assert subset.num_partitions_and_non_partitioned_assets == PARTITIONS  # export_json only
    # The assets' policy cuts the backfill into runs of at most 500 partitions.
    from orderflow_exports import defs

    for name in ("approved_drafts", "export_json"):
        policy = defs.resolve_assets_def(name).backfill_policy
        assert policy is not None
        assert policy.max_partitions_per_run == MAX_PARTITIONS_PER_BACKFILL_RUN
