"""What a draft's partition and the ack sensor's tick say, evaluated as the daemon would."""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from orderflow_exports.application.acks.report import tick_text
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.dagster.test_ack_sensor import (
    check_evaluations,
    drop_ack,
    evaluate,
    exported,
    observations,
    row,
    set_sent_at,
)
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv


def test_an_idle_tick_and_a_working_tick_read_differently(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    ok = exported(env, "acme", "D-1")
    rejected = exported(env, "acme", "D-2")
    idle = evaluate(env)
    assert isinstance(idle, dg.SkipReason)
    assert "no acks to apply" in (idle.skip_message or "")

    drop_ack(config, "ok.json", ok.id)
    drop_ack(config, "no.json", rejected.id, status="FAILED")
    working = evaluate(env)
    assert isinstance(working, dg.SensorResult)
    assert working.skip_reason is not None
    text = working.skip_reason.skip_message or ""
    assert text.startswith("applied 2 ack(s) (1 ACKED, 1 FAILED by the ERP)"), text
    assert "0 ACK_TIMEOUT" in text and "in 1 org(s)" in text


def test_rejection_and_timeout_need_action_waiting_does_not(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme", ack_deadline_seconds=3600)
    rejected = exported(env, "acme", "D-1")
    late = exported(env, "acme", "D-2")
    waiting = exported(env, "acme", "D-3")
    drop_ack(config, "no.json", rejected.id, status="FAILED")
    set_sent_at(env, late.id, datetime.now(UTC) - timedelta(hours=2))
    result = evaluate(env)
    assert isinstance(result, dg.SensorResult)
    assert row(env, rejected.id).status is ExportStatus.FAILED
    assert row(env, late.id).error_code == "ACK_TIMEOUT"

    states = {p: m for p, m in observations(env.instance)}
    assert states["acme:D-1"]["ack_state"] == "NEEDS_ACTION"
    assert states["acme:D-1"]["error_code"] == "ERP_REJECTED"
    assert "re-send" in states["acme:D-1"]["next_step"]
    assert states["acme:D-2"]["ack_state"] == "NEEDS_ACTION"
    assert states["acme:D-2"]["error_code"] == "ACK_TIMEOUT"
    assert "acme:D-3" not in states  # nothing happened to it: no event, no failure
    # The check fails (error) exactly on the two partitions needing action.
    assert check_evaluations(env.instance) == {"acme:D-1": [False], "acme:D-2": [False]}
    assert row(env, waiting.id).status is ExportStatus.SENT

    # The documented re-send: materializing the partition again makes exactly one new attempt.
    before = set(os.listdir(env.outbox("acme")))
    assert env.run_export(["acme:D-1"]).success
    first, second = env.exports("acme:D-1")
    assert first.id == rejected.id and second.attempt == 2 and not second.forced
    assert second.status is ExportStatus.SENT
    assert set(os.listdir(env.outbox("acme"))) - before == {second.filename}


def test_tick_text_names_problems() -> None:
    assert tick_text([], ["org x: CONFIG bad path"]).endswith("problems: org x: CONFIG bad path")
