"""approved_drafts_sensor with a cursor: it reads changes since its previous tick, not history."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import update

from orderflow_exports import defs
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.tables import draft_order
from orderflow_exports.application import planning
from orderflow_exports.defs import sensors
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.sensors import evaluate_approved_drafts
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv


def _tick(
    env: OrderflowEnv, now: datetime, cursor: str | None
) -> tuple[dg.SensorResult | dg.SkipReason, str | None]:
    """One tick at ``now`` from ``cursor``; returns its result and the cursor it leaves."""
    with dg.build_sensor_context(
        instance=env.instance,
        resources={"database": DatabaseResource()},
        definitions=defs,
        cursor=cursor,
    ) as context:
        result = evaluate_approved_drafts(context, DatabaseResource(), now)
        return result, context.cursor


def _keys(result: dg.SensorResult | dg.SkipReason) -> list[str]:
    assert isinstance(result, dg.SensorResult), result
    keys: list[str] = []
    for request in result.run_requests or []:
        if request.partition_key is not None:
            keys.append(request.partition_key)
        else:
            start = request.tags["dagster/asset_partition_range_start"]
            keys.append(f"{start}..{request.tags['dagster/asset_partition_range_end']}")
    return keys


def test_a_tick_with_a_cursor_reads_only_recent_changes_and_says_what_it_did(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    now = datetime.now(UTC)
    # An old approval of an org without connector: the first read reports it, later ones not.
    env.add_drafts(SampleDraft("nocfg", "OLD-1", approved_at=now - timedelta(days=9)))
    env.add_drafts(
        SampleDraft("acme", "D-1", approved_at=now - timedelta(days=9)), partitions=False
    )
    first, cursor = _tick(env, now, None)
    assert _keys(first) == ["acme:D-1"]
    assert cursor is not None
    saved = json.loads(cursor)
    assert saved["tick"].startswith("requested 1 (new 1, re-driven 0, changed 0); skipped 1")
    assert "first read of the backlog" in saved["tick"]
    env.add_partitions(["acme:D-1"])

    later = now + timedelta(seconds=30)
    env.add_drafts(SampleDraft("acme", "D-2", approved_at=later), partitions=False)
    second, cursor = _tick(env, later + timedelta(seconds=1), cursor)
    assert _keys(second) == ["acme:D-2"]
    assert cursor is not None and "changes since" in json.loads(cursor)["tick"]

    idle, cursor = _tick(env, later + timedelta(seconds=31), cursor)
    assert isinstance(idle, dg.SkipReason)
    message = idle.skip_message or ""
    assert message.startswith("no new approved drafts to export (requested 0 (new 0"), message
    assert "nocfg:OLD-1" not in message  # history is not read again


def test_a_late_commit_inside_the_overlap_is_still_requested(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    now = datetime.now(UTC)
    first, cursor = _tick(env, now, None)
    assert isinstance(first, dg.SkipReason)
    # Stamped before the previous tick, committed after it (a long transaction in core).
    stamped = now - planning.WINDOW_OVERLAP + timedelta(minutes=1)
    env.add_drafts(SampleDraft("acme", "LATE-1", approved_at=stamped), partitions=False)
    second, cursor = _tick(env, now + timedelta(seconds=30), cursor)
    assert _keys(second) == ["acme:LATE-1"]
    # Read again by the next tick's overlap, but its request record keeps it from a second run.
    third, _ = _tick(env, now + timedelta(seconds=60), cursor)
    assert isinstance(third, dg.SkipReason)


def test_equal_change_times_across_pages_are_all_requested(
    orderflow_env: OrderflowEnv, monkeypatch: object
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    now = datetime.now(UTC)
    _, cursor = _tick(env, now, None)
    same = now + timedelta(seconds=10)
    keys = env.add_drafts(
        *(SampleDraft("acme", f"E-{n:02d}", approved_at=same) for n in range(7)), partitions=False
    )
    monkeypatch.setattr(sensors, "_PAGE_SIZE", 2)  # type: ignore[attr-defined]
    result, _ = _tick(env, now + timedelta(seconds=30), cursor)
    assert isinstance(result, dg.SensorResult)
    [add] = result.dynamic_partitions_requests or []
    assert sorted(add.partition_keys) == keys  # type: ignore[union-attr]


def test_a_capped_tick_keeps_its_window_and_the_next_tick_takes_the_rest(
    orderflow_env: OrderflowEnv, monkeypatch: object
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    now = datetime.now(UTC)
    _, cursor = _tick(env, now, None)
    keys = env.add_drafts(
        *(
            SampleDraft("acme", f"C-{n:02d}", approved_at=now + timedelta(seconds=n))
            for n in range(5)
        ),
        partitions=False,
    )
    monkeypatch.setattr(sensors, "MAX_DRAFTS_PER_TICK", 3)  # type: ignore[attr-defined]
    first, next_cursor = _tick(env, now + timedelta(seconds=30), cursor)
    assert isinstance(first, dg.SensorResult)
    assert next_cursor is not None and "cap reached" in json.loads(next_cursor)["tick"]
    assert json.loads(next_cursor)["since"] == json.loads(cursor or "{}")["since"]
    [add] = first.dynamic_partitions_requests or []
    env.add_partitions(add.partition_keys)  # type: ignore[union-attr]
    second, _ = _tick(env, now + timedelta(seconds=60), next_cursor)
    assert isinstance(second, dg.SensorResult)
    [rest] = second.dynamic_partitions_requests or []
    assert [*add.partition_keys, *rest.partition_keys] == keys  # type: ignore[union-attr]


def test_a_newly_enabled_connector_reads_its_orgs_backlog_once(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    now = datetime.now(UTC)
    [old] = env.add_drafts(
        SampleDraft("globex", "G-1", approved_at=now - timedelta(days=30)), partitions=False
    )
    first, cursor = _tick(env, now, None)
    assert isinstance(first, dg.SkipReason)  # globex has no connector yet
    env.add_local_connector("globex")
    second, cursor = _tick(env, now + timedelta(seconds=30), cursor)
    assert _keys(second) == [old]
    assert cursor is not None and "connector newly enabled (globex)" in json.loads(cursor)["tick"]


def test_a_due_redrive_and_a_reapproval_are_found_with_a_cursor(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    now = datetime.now(UTC)
    old = now - timedelta(days=3)
    keys = env.add_drafts(
        SampleDraft("acme", "R-1", approved_at=old),
        SampleDraft("acme", "R-2", approved_at=old),
        partitions=False,
    )
    first, cursor = _tick(env, now, None)
    assert _keys(first) == ["acme:R-1..acme:R-2"]
    env.add_partitions(keys)
    requests = SqlExportRequests(env.engine)
    # R-1 met an outage; R-2 was refused and is approved again later (core moves updated_at).
    record = requests.record_outcome(
        DraftRef("acme", "R-1"), RequestOutcome.TRANSIENT, "[CONNECTION] refused", at=now
    )
    requests.record_outcome(DraftRef("acme", "R-2"), RequestOutcome.REFUSED, "is DRAFT", at=now)
    assert record.next_due_at is not None
    quiet, cursor = _tick(env, now + timedelta(seconds=30), cursor)
    assert isinstance(quiet, dg.SkipReason)
    with env.engine.begin() as conn:
        conn.execute(
            update(draft_order)
            .where(draft_order.c.id == "R-2")
            .values(updated_at=now + timedelta(seconds=40), approved_at=now + timedelta(seconds=40))
        )
    at = record.next_due_at + timedelta(seconds=1)
    again, cursor = _tick(env, at, cursor)
    # Neighbouring partitions requested again share one run (their storage order is asked).
    assert _keys(again) == ["acme:R-1..acme:R-2"]
    assert cursor is not None
    assert "re-driven 1, changed 1" in json.loads(cursor)["tick"]


def test_an_unreadable_cursor_means_one_whole_read(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"), partitions=False)
    result, cursor = _tick(env, datetime.now(UTC), "not json")
    assert _keys(result) == [key]
    assert cursor is not None and json.loads(cursor)["v"] == 1
