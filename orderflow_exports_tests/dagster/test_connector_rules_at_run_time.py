"""Rows written by other tools than the CLI: the connector rules are checked again in the run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
from sqlalchemy import insert

from orderflow_exports.adapters.sql.tables import erp_connector_config
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return "\n".join(str(e.event_specific_data) for e in failures)


def test_a_row_with_ack_path_equal_to_export_path_fails_only_its_org(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    env.add_local_connector("globex")
    # Written straight into the table, as another tool could.
    env.configs.upsert(replace(acme, ack_path=acme.export_path))
    keys = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("globex", "D-2"))

    result = env.run_export(keys)

    assert not result.success
    [globex_row] = env.exports("globex:D-2")
    assert globex_row.status is ExportStatus.SENT
    assert env.exports("acme:D-1") == []  # nothing written, nothing moved
    assert list(env.outbox("acme").iterdir()) == []
    failures = _failure_text(result)
    assert "acme:D-1: CONFIG" in failures and "the same folder" in failures
    assert "globex:D-2" not in failures


def test_two_orgs_sharing_an_ack_folder_both_fail_and_a_third_is_sent(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    shared = env.dropzones / "shared-acks"
    shared.mkdir(parents=True)
    env.add_local_connector("acme")
    env.add_local_connector("initech")
    env.add_local_connector("globex")
    with env.engine.begin() as conn:
        conn.execute(
            erp_connector_config.update()
            .where(erp_connector_config.c.org_id.in_(["acme", "globex"]))
            .values(ack_path=str(shared))
        )
    keys = env.add_drafts(
        SampleDraft("acme", "D-1"), SampleDraft("globex", "D-2"), SampleDraft("initech", "D-3")
    )

    result = env.run_export(keys)

    assert [r.status for r in env.exports("initech:D-3")] == [ExportStatus.SENT]
    assert env.exports("acme:D-1") == [] and env.exports("globex:D-2") == []
    failures = _failure_text(result)
    assert "org globex's ack_path" in failures and "org acme's ack_path" in failures


def test_an_invalid_row_does_not_stop_the_other_orgs(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("globex")
    with env.engine.begin() as conn:
        conn.execute(
            insert(erp_connector_config).values(
                org_id="acme",
                connector_type="DROPZONE_JSON_V1",
                enabled=True,
                transport="local",
                export_path="/tmp/x",
                ack_path="/tmp/y",
                ack_deadline_seconds=0,  # ConnectorConfig refuses it
                updated_at=datetime.now(UTC),
            )
        )
    keys = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("globex", "D-2"))

    result = env.run_export(keys)

    assert [r.status for r in env.exports("globex:D-2")] == [ExportStatus.SENT]
    assert "acme:D-1: CONFIG" in _failure_text(result)
