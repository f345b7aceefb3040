"""Rows written by other tools than the CLI: the connector rules are checked again in the run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import insert

from orderflow_exports.adapters.sql.tables import erp_connector_config
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.dagster.test_ack_sensor import definitions, drop_ack, row
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


def test_of_two_orgs_sharing_an_ack_folder_the_newer_fails_and_a_third_is_sent(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    shared = env.dropzones / "shared-acks"
    shared.mkdir(parents=True)
    env.add_local_connector("acme")  # saved first: acme keeps its folder
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
    assert [r.status for r in env.exports("acme:D-1")] == [ExportStatus.SENT]
    assert env.exports("globex:D-2") == []
    failures = _failure_text(result)
    assert "globex:D-2: CONFIG" in failures and "org acme's ack_path" in failures
    assert "acme:D-1" not in failures


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


# --- a row written later cannot stop the orgs that were there first ------------------------------


def _insert_row(env: OrderflowEnv, org_id: str, **values: object) -> None:
    """A connector row written straight into the table, as another tool could."""
    row = {
        "org_id": org_id,
        "connector_type": "DROPZONE_JSON_V1",
        "enabled": True,
        "transport": "local",
        "ack_deadline_seconds": 3600,
        "updated_at": datetime.now(UTC) + timedelta(seconds=1),
        **values,
    }
    with env.engine.begin() as conn:
        conn.execute(insert(erp_connector_config).values(**row))


def _run_acks(env: OrderflowEnv) -> dg.ExecuteInProcessResult:
    job = definitions().resolve_job_def("process_acks_job")
    return job.execute_in_process(instance=env.instance, raise_on_error=False)


def test_a_disabled_row_with_the_root_folder_stops_no_healthy_org(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    env.add_local_connector("globex")
    _insert_row(env, "zzz", enabled=False, export_path="/", ack_path="/")
    keys = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("globex", "D-2"))

    result = env.run_export(keys)

    assert result.success, _failure_text(result)
    [record] = env.exports("acme:D-1")
    assert record.status is ExportStatus.SENT
    assert [r.status for r in env.exports("globex:D-2")] == [ExportStatus.SENT]
    drop_ack(acme, "ack.json", record.id)
    acks = _run_acks(env)
    assert acks.success, _failure_text(acks)
    assert row(env, record.id).status is ExportStatus.ACKED


def test_a_newer_org_with_the_same_secret_prefix_refuses_only_itself(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    # ORDERFLOW_SECRET_ACME_ is both orgs' prefix: the newer one must not stop acme.
    _insert_row(
        env,
        "ACME",
        transport="sftp",
        export_path="/in",
        ack_path="/acks",
        host="erp.example.com",
        port=22,
        username="orderflow",
        host_key="SHA256:" + "A" * 43,
        private_key_ref="env:ORDERFLOW_SECRET_ACME_KEY",
    )
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))

    result = env.run_export([key])

    assert result.success, _failure_text(result)
    [record] = env.exports(key)
    assert record.status is ExportStatus.SENT
    drop_ack(acme, "ack.json", record.id)
    acks = _run_acks(env)
    assert row(env, record.id).status is ExportStatus.ACKED
    # the ack pass still reports the newer row as refused
    assert not acks.success
    failures = _failure_text(acks)
    assert "ACME" in failures and "connector config refused" in failures


# --- local folders apart from the code location's folders and, through symlinks, other orgs ------


def _archived(env: OrderflowEnv, org_id: str) -> list[Path]:
    return sorted(p for p in (env.store_root / "exports" / org_id).rglob("*") if p.is_file())


def test_an_ack_folder_in_the_export_store_is_refused_and_nothing_is_moved(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("globex")
    [key] = env.add_drafts(SampleDraft("globex", "D-1"))
    assert env.run_export([key]).success
    archived = _archived(env, "globex")
    assert archived, "the export was archived"
    evil_out = env.dropzones / "evil" / "outbox"
    evil_out.mkdir(parents=True)
    _insert_row(env, "evil", export_path=str(evil_out), ack_path=str(archived[0].parent))
    [evil_key] = env.add_drafts(SampleDraft("evil", "D-9"))

    acks = _run_acks(env)
    exports = env.run_export([evil_key])

    assert _archived(env, "globex") == archived  # nothing moved into processed/ or error/
    assert not (archived[0].parent / "error").exists()
    for result in (acks, exports):
        failures = _failure_text(result)
        assert "evil" in failures and "the export store" in failures, failures
    assert env.exports(evil_key) == []


@pytest.mark.parametrize(
    ("reserved", "says"),
    [("spool", "the spool"), ("secrets", "the secret folder"), ("dagster_home", "DAGSTER_HOME")],
)
def test_a_folder_in_the_code_locations_own_folders_is_refused(
    orderflow_env: OrderflowEnv, test_secret_dirs: Path, reserved: str, says: str
) -> None:
    env = orderflow_env
    folder = {
        "spool": env.home / "orderflow" / "spool" / "evil",
        "secrets": test_secret_dirs / "evil",
        "dagster_home": env.home / "evil-acks",
    }[reserved]
    evil_out = env.dropzones / "evil" / "outbox"
    evil_out.mkdir(parents=True)
    _insert_row(env, "evil", export_path=str(evil_out), ack_path=str(folder))
    [key] = env.add_drafts(SampleDraft("evil", "D-1"))

    result = env.run_export([key])

    failures = _failure_text(result)
    assert "evil:D-1: CONFIG" in failures and says in failures
    assert env.exports(key) == [] and list(evil_out.iterdir()) == []


def test_an_ack_folder_linked_to_another_orgs_outbox_is_refused(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("globex")
    [key] = env.add_drafts(SampleDraft("globex", "D-1"))
    assert env.run_export([key]).success
    globex_files = sorted(env.outbox("globex").iterdir())
    assert globex_files
    evil_out = env.dropzones / "evil" / "outbox"
    evil_out.mkdir(parents=True)
    link = env.dropzones / "evil" / "acks"
    link.symlink_to(env.outbox("globex"))
    _insert_row(env, "evil", export_path=str(evil_out), ack_path=str(link))
    [evil_key] = env.add_drafts(SampleDraft("evil", "D-2"))

    acks = _run_acks(env)
    exports = env.run_export([evil_key])

    assert sorted(env.outbox("globex").iterdir()) == globex_files  # nothing moved
    for result in (acks, exports):
        failures = _failure_text(result)
        assert "through symlinks" in failures and "org globex's export_path" in failures
    assert env.exports(evil_key) == []
