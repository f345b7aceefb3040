"""The Dagster UI in a real browser: the asset graph, one partition, a backfill of failed ones.

One ``dagster-webserver`` and one ``dagster-daemon`` (it dequeues UI runs and runs backfills) per
module, on a temporary instance configured like production (``support/dagster_services.py``);
headless Debian Chromium driven by Playwright. Each step saves a screenshot under
``test-artifacts/ui/``.

Setup, before the services start: acme's dropzone works, globex's export folder is missing; one
run over ``acme:A-1, globex:G-1, globex:G-2`` sends A-1 and fails the two globex drafts (Dagster
marks all three partitions failed: the step failed). ``approved_drafts_sensor`` runs in the daemon
too; every draft's partition exists before its draft does, so it never launches runs of its own.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.components import require_component
from orderflow_exports_tests.support.dagster_services import (
    DagsterService,
    artifacts_dir,
    graphql,
    module_orderflow_env,
    set_nux_seen,
    start_daemon,
    start_webserver,
    wait_for,
)
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

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
UI_TIMEOUT_MS = 60_000
RUN_DEADLINE_SECONDS = 180  # bounds a hang; a daemon-launched run takes ~10 s here
FAILED_KEYS = ["acme:A-1", "globex:G-1", "globex:G-2"]


@dataclass
class Ui:
    """What the module's tests share: data, services, a browser page, the screenshot folder."""

    env: OrderflowEnv
    web: DagsterService
    daemon: DagsterService
    page: Any  # playwright.sync_api.Page
    shots: Path

    @property
    def url(self) -> str:
        assert self.web.url
        return self.web.url

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def logs(self) -> str:
        return f"{self.web.log_tail(3000)}\n{self.daemon.log_tail(6000)}"

    def alive(self) -> str | None:
        return self.web.dead() or self.daemon.dead()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    require_component(
        shutil.which(CHROMIUM) is not None, f"Chromium not found at {CHROMIUM} (apt chromium)"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_component(False, "the playwright Python package is not installed")
        raise
    root = tmp_path_factory.mktemp("ui")
    with module_orderflow_env(root) as env:
        env.add_local_connector("acme")
        env.add_local_connector("globex", export_path=str(env.dropzones / "missing"))
        refs = [key.split(":") for key in FAILED_KEYS]
        keys = env.add_drafts(*(SampleDraft(org_id, draft_id) for org_id, draft_id in refs))
        assert not env.run_export(keys).success
        web = start_webserver(env, root)
        daemon = start_daemon(env, root)
        try:
            set_nux_seen(web)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(UI_TIMEOUT_MS)
                try:
                    yield Ui(env, web, daemon, page, artifacts_dir("ui"))
                finally:
                    browser.close()
        finally:
            web.stop()
            daemon.stop()


def test_asset_graph_shows_approved_drafts_upstream_of_export_json(ui: Ui) -> None:
    page = ui.page
    page.goto(f"{ui.url}/asset-groups")
    for asset in ("approved_drafts", "export_json"):
        page.wait_for_selector(f'[data-tooltip="{asset}"]', state="visible")
    # The nodes finish loading their partition counts before the picture is taken.
    page.wait_for_function("() => !document.body.innerText.includes('Loading...')")
    page.get_by_text("(3 failed)").first.wait_for()  # export_json's node: the setup's failures
    ui.shot("1-asset-graph")
    # The edge drawn between them is the dependency the code location declares.
    data = graphql(ui.web, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    deps = {n["assetKey"]["path"][0]: n["dependencyKeys"] for n in data["assetNodes"]}
    assert deps["export_json"] == [{"path": ["approved_drafts"]}]
    assert deps["approved_drafts"] == []


def test_materialize_one_partition_from_the_ui(ui: Ui) -> None:
    env, page = ui.env, ui.page
    key = "acme:A-9"
    env.add_partitions([key])  # the partition first: the sensor skips drafts it knows
    env.add_drafts(SampleDraft("acme", "A-9", lines=4), partitions=False)

    page.goto(f"{ui.url}/assets/export_json?view=partitions&partition={urllib.parse.quote(key)}")
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("1 partition", exact=True).wait_for()
    ui.shot("2a-materialize-dialog")
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    toast.wait_for()
    run_prefix = toast.inner_text().split()[-1]
    ui.shot("2b-run-launched")

    row = wait_for(
        f"the UI's run to export {key}",
        lambda: next((r for r in env.exports(key) if r.status is ExportStatus.SENT), None),
        timeout=RUN_DEADLINE_SECONDS,
        alive=ui.alive,
    )
    assert row.dagster_run_id and row.dagster_run_id.startswith(run_prefix), ui.logs()
    run = wait_for(
        "the run to finish",
        lambda: _finished(env.instance, row.dagster_run_id or ""),
        timeout=RUN_DEADLINE_SECONDS,
        alive=ui.alive,
    )
    assert run.status is dg.DagsterRunStatus.SUCCESS, ui.logs()
    assert run.tags.get("dagster/partition") == key

    # The file is in acme's dropzone, as recorded.
    published = env.outbox("acme") / row.filename
    assert published.is_file()
    assert hashlib.sha256(published.read_bytes()).hexdigest() == row.content_sha256
    assert "acme_A-9_" in row.filename

    # And the partition page shows the materialization with the export's metadata.
    page.reload()
    page.get_by_text(row.filename).first.wait_for()
    ui.shot("2c-partition-materialized")


def test_backfill_failed_partitions_from_the_ui(ui: Ui) -> None:
    env, page = ui.env, ui.page
    env.add_local_connector("globex")  # the cause of the failures is fixed
    before = {k: env.exports(k) for k in FAILED_KEYS}
    assert [[r.status for r in rows] for rows in before.values()] == [
        [ExportStatus.SENT],
        [ExportStatus.FAILED],
        [ExportStatus.FAILED],
    ]

    page.goto(f"{ui.url}/assets/export_json?view=partitions")
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Failed and missing").click()
    dialog.get_by_text(f"{len(FAILED_KEYS)} partitions", exact=True).wait_for()
    listed = dialog.inner_text()
    assert all(k in listed for k in FAILED_KEYS), listed
    ui.shot("3a-backfill-failed-and-missing")
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill [a-z0-9]+"))
    toast.wait_for()
    backfill_id = toast.inner_text().split()[-1]
    ui.shot("3b-backfill-created")

    # The daemon submits the backfill's run on its next backfill iteration (every 30 s).
    runs = wait_for(
        f"the runs of backfill {backfill_id}",
        lambda: _finished_runs(env.instance, backfill_id),
        timeout=RUN_DEADLINE_SECONDS,
        alive=ui.alive,
    )
    assert all(r.status is dg.DagsterRunStatus.SUCCESS for r in runs), ui.logs()

    # Only what needed it was sent: A-1 was already SENT, the globex drafts got attempt 2.
    assert env.exports("acme:A-1") == before["acme:A-1"]
    for key in ("globex:G-1", "globex:G-2"):
        failed, sent = env.exports(key)
        assert failed == before[key][0]
        assert sent.status is ExportStatus.SENT and sent.attempt == 2
        assert sent.dagster_run_id in {r.run_id for r in runs}
    assert len(os.listdir(env.outbox("globex"))) == 2
    assert [n for n in os.listdir(env.outbox("acme")) if n.startswith("acme_A-1_")] == [
        before["acme:A-1"][0].filename
    ]

    # Every partition is materialized now, as the UI shows it.
    page.goto(f"{ui.url}/assets/export_json?view=partitions")
    page.get_by_text("Failed (0)", exact=True).wait_for()
    partitions = env.instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME)
    page.get_by_text(f"Materialized ({len(partitions)})", exact=True).wait_for()
    ui.shot("3c-partitions-after-backfill")


def _finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def _finished_runs(
    instance: dg.DagsterInstance, backfill_id: str
) -> Sequence[dg.DagsterRun] | None:
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    return runs if runs and all(r.is_finished for r in runs) else None


BATCH_SIZE = 60


def _partition_page(ui: Ui, key: str) -> None:
    ui.page.goto(f"{ui.url}/assets/export_json?view=partitions&partition={urllib.parse.quote(key)}")


def test_a_sensor_batch_shows_each_drafts_own_export_and_a_rejection_is_resent(ui: Ui) -> None:
    from orderflow_exports_tests.dagster.test_ack_sensor import drop_ack

    env, page = ui.env, ui.page
    # Drafts without partitions: approved_drafts_sensor (in the daemon) adds them and launches
    # the batch run itself, as in production.
    # Approved now, as OrderFlow core stamps them: the sensor reads changes since its last tick.
    now = datetime.now(UTC)
    samples = [
        SampleDraft(
            "acme", f"B-{i:03d}", lines=1 + i % 3, approved_at=now + timedelta(milliseconds=i)
        )
        for i in range(BATCH_SIZE)
    ]
    keys = env.add_drafts(*samples, partitions=False)

    def all_sent() -> dict[str, Any] | None:
        rows = {k: env.exports(k) for k in keys}
        done = all(r and r[-1].status is ExportStatus.SENT for r in rows.values())
        return {k: r[-1] for k, r in rows.items()} if done else None

    rows = wait_for(
        f"the sensor's run(s) to export {BATCH_SIZE} drafts",
        all_sent,
        timeout=RUN_DEADLINE_SECONDS * 2,
        interval=2.0,
        alive=ui.alive,
    )
    run_ids = {r.dagster_run_id for r in rows.values()}
    assert len(run_ids) < BATCH_SIZE  # batched: not one run per draft
    for run_id in run_ids:
        wait_for(
            "the batch run to finish",
            lambda run_id=run_id: _finished(env.instance, run_id or ""),
            timeout=RUN_DEADLINE_SECONDS,
            alive=ui.alive,
        )

    # Three partition pages, each with its own export id, status and file, none of another's.
    sample_keys = [keys[0], keys[BATCH_SIZE // 2], keys[-1]]
    for index, key in enumerate(sample_keys):
        _partition_page(ui, key)
        # The detail pane shows the partition's materialization: the draft's own export.
        page.get_by_text(rows[key].id).first.wait_for()
        page.get_by_text(rows[key].filename).first.wait_for()
        text = page.inner_text("body")
        assert "SENT" in text
        others = [rows[k].id for k in sample_keys if k != key]
        assert not any(other in text for other in others), key
        ui.shot(f"4{'abc'[index]}-batch-partition-{key.replace(':', '_')}")

    # The ERP rejects one of them: its page says it needs action, with the next step.
    rejected_key = keys[BATCH_SIZE // 2]
    rejected = rows[rejected_key]
    config = env.configs.get("acme")
    assert config is not None
    drop_ack(config, "reject.json", rejected.id, status="FAILED")
    wait_for(
        "erp_ack_sensor to apply the rejection",
        lambda: env.ledger.get(rejected.id).status is ExportStatus.FAILED,  # type: ignore[union-attr]
        timeout=RUN_DEADLINE_SECONDS,
        interval=2.0,
        alive=ui.alive,
    )
    # The partition's detail pane shows its newest event: the ack sensor's observation.
    _partition_page(ui, rejected_key)
    page.get_by_text("NEEDS_ACTION").first.wait_for()
    page.get_by_text("ERP_REJECTED").first.wait_for()
    ui.shot("4d-rejected-needs-action")

    # The documented UI path: Materialize that partition again (no force needed).
    before = set(os.listdir(env.outbox("acme")))
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("1 partition", exact=True).wait_for()
    dialog.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).wait_for()
    resent = wait_for(
        f"the re-send of {rejected_key}",
        lambda: next(
            (
                r
                for r in env.exports(rejected_key)
                if r.attempt == 2 and r.status is ExportStatus.SENT
            ),
            None,
        ),
        timeout=RUN_DEADLINE_SECONDS,
        alive=ui.alive,
    )
    run = wait_for(
        "the re-send run to finish",
        lambda: _finished(env.instance, resent.dagster_run_id or ""),
        timeout=RUN_DEADLINE_SECONDS,
        alive=ui.alive,
    )
    assert run.status is dg.DagsterRunStatus.SUCCESS, ui.logs()
    assert [r.attempt for r in env.exports(rejected_key)] == [1, 2]  # one new row
    assert set(os.listdir(env.outbox("acme"))) - before == {resent.filename}  # one new file

    # The fresh export waits for its ack: its check (run with the UI's materialization) passed.
    check = dg.AssetCheckKey(dg.AssetKey("export_json"), "erp_ack")
    [latest] = [
        r
        for r in env.instance.event_log_storage.get_asset_check_execution_history(check, limit=50)
        if r.run_id == run.run_id
    ]
    evaluation = latest.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert evaluation.passed, evaluation
    _partition_page(ui, rejected_key)
    page.get_by_text(resent.id).first.wait_for()
    ui.shot("4e-resent-waiting-for-ack")
