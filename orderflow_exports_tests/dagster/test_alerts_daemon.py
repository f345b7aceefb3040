"""The alert sensor in the real ``dagster-daemon``: an event is told once, and not again after
the daemon restarts (the told events live in ``erp_alert``, not in the daemon)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports_tests.dagster.test_alerts import _export
from orderflow_exports_tests.support.alert_servers import (
    SmtpReceiver,
    WebhookReceiver,
    smtp_server,
    webhook,
)
from orderflow_exports_tests.support.dagster_services import (
    module_orderflow_env,
    start_daemon,
    wait_for,
)
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv

__all__ = ["smtp_server", "webhook"]  # fixtures

# Generous: two daemon starts and their first ticks on a loaded 2-core machine.
DEADLINE_SECONDS = 240.0


@pytest.fixture
def daemon_env(tmp_path: Path) -> Iterator[OrderflowEnv]:
    with module_orderflow_env(tmp_path / "env") as env:
        yield env


def _alert_ticks(instance: dg.DagsterInstance) -> list[object]:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == "orderflow_alerts_sensor":
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            return [t for t in ticks if t.status in (TickStatus.SKIPPED, TickStatus.FAILURE)]
    return []


@pytest.mark.slow
def test_daemon_tells_each_event_once_across_a_restart(
    daemon_env: OrderflowEnv,
    tmp_path: Path,
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
) -> None:
    env = daemon_env
    _export(
        SqlExportLedger(env.engine),
        "acme",
        "D-1",
        created=datetime.now(UTC) - timedelta(hours=3),
        sent=True,
        fail=("ERP_REJECTED", "customer 4711 is blocked"),
    )
    settings = {
        "ORDERFLOW_ALERT_WEBHOOK_URL": webhook.url,
        "ORDERFLOW_ALERT_SMTP_HOST": smtp_server.host,
        "ORDERFLOW_ALERT_SMTP_PORT": str(smtp_server.port),
        "ORDERFLOW_ALERT_SMTP_TO": "ops@example.test",
    }
    for round_ in (1, 2):
        seen = len(_alert_ticks(env.instance))
        log_dir = tmp_path / f"daemon{round_}"
        log_dir.mkdir()
        daemon = start_daemon(env, log_dir, **settings)
        try:
            wait_for(
                f"an orderflow_alerts_sensor tick of daemon {round_}",
                lambda seen=seen: len(_alert_ticks(env.instance)) > seen,  # type: ignore[misc]
                timeout=DEADLINE_SECONDS,
                alive=daemon.dead,
            )
        finally:
            daemon.stop()
        logs = daemon.log_tail()
        assert [p["drafts"] for p in webhook.posts] == [["acme:D-1"]], logs
        assert len(smtp_server.messages) == 1, logs

    newest = _alert_ticks(env.instance)[0]
    assert newest.status is TickStatus.SKIPPED  # type: ignore[attr-defined]
    assert "2 event(s) already told" in (newest.skip_reason or "")  # type: ignore[attr-defined]
