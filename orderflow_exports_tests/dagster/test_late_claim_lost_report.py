"""A stalled run's late report never overrules the run that took over, nor leads to a second copy.

Real processes as in ``test_stalled_run_fencing``: run 1 stalls (SIGSTOP) after its claim on the
rename, is force-terminated, run 2 sends attempt 2 and reports SENT, then run 1 wakes up and
finds it lost its claim. Then attempt 2 times out at the ERP (the real ack pass, past the org's
deadline) and OrderFlow touches the draft: the ERP may hold attempt 2, so the sensor never
requests the draft again, and ``exports attention`` shows the timeout, not a stopped request.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import update

from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.tables import draft_order
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.dagster.test_approved_drafts_sensor import (
    _evaluate_at,
    _requested_keys,
)
from orderflow_exports_tests.dagster.test_cli import run_cli
from orderflow_exports_tests.dagster.test_cli_attention import ack_pass
from orderflow_exports_tests.dagster.test_stalled_run_fencing import (
    HANG_GUARD_SECONDS,
    _start_stalling_run,
    _wait_until_stopped,
)
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv


@pytest.mark.slow  # a real `dagster job execute`
def test_a_late_claim_lost_report_neither_overwrites_sent_nor_leads_to_a_second_copy(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    env.outbox("acme").mkdir(parents=True, exist_ok=True)
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=50))
    ref = DraftRef("acme", "D-1")
    requests = SqlExportRequests(env.engine)
    assert _requested_keys(_evaluate_at(env, datetime.now(UTC))) == [key]

    stalled = _start_stalling_run(env, key, "renaming")
    try:
        _wait_until_stopped(stalled)
        [pending] = env.exports(key)
        run_1 = env.instance.get_run_by_id(pending.dagster_run_id or "")
        assert run_1 is not None
        env.instance.report_run_canceled(run_1)
        assert env.run_export([key]).success
        first, second = env.exports(key)
        assert second.status is ExportStatus.SENT and second.attempt == 2
        after_run_2 = requests.get(ref)
        assert after_run_2 is not None and after_run_2.last_outcome is RequestOutcome.SENT

        os.kill(stalled.pid, signal.SIGCONT)
        output, _ = stalled.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        if stalled.poll() is None:
            stalled.kill()
            stalled.wait()
    assert stalled.returncode != 0 and "lost its claim" in output, output[-4000:]

    # Run 1's late report changed nothing: the record still says what run 2 reported.
    assert requests.get(ref) == after_run_2
    assert requests.needing_person() == []

    # No ack for attempt 2 within acme's deadline: FAILED ACK_TIMEOUT, nothing blocks any more.
    ack_pass(env, acme, later=timedelta(hours=25))
    assert [(r.attempt, r.status, r.error_code) for r in env.exports(key)] == [
        (1, ExportStatus.FAILED, "INTERRUPTED"),
        (2, ExportStatus.FAILED, "ACK_TIMEOUT"),
    ]
    # OrderFlow touches the draft; the sensor must still leave it to a person.
    touched = datetime.now(UTC) + timedelta(minutes=1)
    with env.engine.begin() as conn:
        conn.execute(
            update(draft_order).where(draft_order.c.id == "D-1").values(updated_at=touched)
        )
    for later in (timedelta(hours=26), timedelta(days=9)):
        assert key not in _requested_keys_or_none(_evaluate_at(env, datetime.now(UTC) + later))
    assert requests.get(ref) == after_run_2

    code, out, err = run_cli("exports", "attention")
    assert code == 0, err
    [line] = [line for line in out.splitlines() if line.startswith(f"{key} ")]
    assert "attempt 2 FAILED ACK_TIMEOUT" in line and "Check the ERP first" in line, line
    assert "automatic requests stopped" not in line, line
    assert first.id not in out  # the lost claim is no reason for a person to act


def _requested_keys_or_none(result: dg.SensorResult | dg.SkipReason) -> list[str]:
    """The partitions a tick requested; none when it skipped."""
    return [] if isinstance(result, dg.SkipReason) else _requested_keys(result)
