"""The ack loop in Dagster: erp_ack_sensor, process_acks_job and the erp_ack check.

Sensor evaluations use ``build_sensor_context`` on the embedded defaults, over local folders and
over SFTP (the private sshd); the asset events a tick returns are reported to the instance the
way the daemon does it. The slow tests start the real ``dagster-daemon`` and the real CLI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import update

from orderflow_exports.adapters.dagster_instance import once_per_partition
from orderflow_exports.adapters.sql.tables import erp_export
from orderflow_exports.defs.acks import ack_asset_checks, ack_jobs, ack_resources, ack_sensors
from orderflow_exports.defs.acks.events import ERP_ACK_CHECK, EXPORT_JSON
from orderflow_exports.defs.acks.resource import AckProcessingResource
from orderflow_exports.defs.acks.sensor import AckCursor, erp_ack_sensor
from orderflow_exports.defs.partitions import approved_drafts_partitions
from orderflow_exports.defs.resources import DatabaseResource, DropzoneResource
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT, ERP_REJECTED
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.sshd import SshdServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECK_KEY = dg.AssetCheckKey(EXPORT_JSON, ERP_ACK_CHECK)
PARTITION_TAG = {"dagster/partition": "acme:D-1"}


def definitions() -> dg.Definitions:
    """The code location's Definitions, holding this module's sensor, job and check."""
    from orderflow_exports import defs

    if defs.get_repository_def().has_sensor_def("erp_ack_sensor"):
        return defs
    # Until the ack objects are wired into defs/definitions.py (tests of the wiring: slow ones).
    return dg.Definitions.merge(
        defs,
        dg.Definitions(
            sensors=ack_sensors,
            jobs=ack_jobs,
            asset_checks=ack_asset_checks,
            resources=ack_resources,
        ),
    )


def resources(dropzone: DropzoneResource | None = None, **ack_settings: Any) -> dict[str, Any]:
    return {
        "database": DatabaseResource(),
        "dropzone": dropzone or DropzoneResource(),
        "ack_processing": AckProcessingResource(**ack_settings),
    }


def evaluate(env: OrderflowEnv, **ack_settings: Any) -> dg.SensorResult | dg.SkipReason:
    """One tick without a cursor; its asset events are reported as the daemon would."""
    return evaluate_with_cursor(env, None, **ack_settings)[0]


def evaluate_with_cursor(
    env: OrderflowEnv,
    cursor: str | None,
    dropzone: DropzoneResource | None = None,
    **ack_settings: Any,
) -> tuple[dg.SensorResult | dg.SkipReason, str | None]:
    """One tick from ``cursor``, as the daemon runs it; returns the result and the new cursor."""
    with dg.build_sensor_context(
        instance=env.instance,
        resources=resources(dropzone, **ack_settings),
        definitions=definitions(),
        cursor=cursor,
    ) as context:
        result = erp_ack_sensor(context)
        new_cursor = context.cursor
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    if isinstance(result, dg.SensorResult):
        for event in result.asset_events:
            env.instance.report_runless_asset_event(event)
    return result, new_cursor


def exported(env: OrderflowEnv, org_id: str, draft_id: str) -> ExportRecord:
    """Export one draft with the real export job; returns its SENT row."""
    [key] = env.add_drafts(SampleDraft(org_id, draft_id))
    result = env.run_export([key])
    assert result.success
    record = env.exports(key)[-1]
    assert record.status is ExportStatus.SENT
    return record


def drop_ack(config: ConnectorConfig, name: str, export_id: str, status: str = "ACKED") -> Path:
    body = {
        "export_id": export_id,
        "status": status,
        "erp_order_number": "SO-4711" if status == "ACKED" else None,
        "message": None if status == "ACKED" else "customer on credit hold",
        "errors": []
        if status == "ACKED"
        else [{"code": "CREDIT", "message": "limit exceeded", "line_no": None}],
        "received_at": "2026-11-26T10:00:00Z",
    }
    path = Path(config.ack_path) / name
    # Written under a temp name first, like a careful ERP: the sensor never sees half a file.
    temp = path.with_name(f".{name}.tmp")
    temp.write_text(json.dumps(body), encoding="utf-8")
    temp.rename(path)
    return path


def row(env: OrderflowEnv, export_id: str) -> ExportRecord:
    record = env.ledger.get(export_id)
    assert record is not None
    return record


def check_evaluations(
    instance: dg.DagsterInstance, run_id: str = ""
) -> dict[str | None, list[bool]]:
    """erp_ack results per partition, oldest first: the sensor's (run-less) or one run's.

    Runs that execute the check itself (e.g. a materialization in the UI) are left out.
    """
    history = instance.event_log_storage.get_asset_check_execution_history(CHECK_KEY, limit=100)
    found: dict[str | None, list[bool]] = {}
    for record in reversed(history):
        if record.run_id != run_id or record.event is None or record.event.dagster_event is None:
            continue
        data = record.event.dagster_event.event_specific_data
        if isinstance(data, dg.AssetCheckEvaluation):
            found.setdefault(data.partition, []).append(data.passed)
    return found


def observations(instance: dg.DagsterInstance) -> list[tuple[str | None, dict[str, Any]]]:
    """The ack pass's observations (export_json's own per-draft export observations left out)."""
    records = instance.fetch_observations(EXPORT_JSON, limit=100, ascending=True).records
    result = []
    for record in records:
        observation = record.asset_observation
        assert observation is not None
        metadata = {k: v.value for k, v in observation.metadata.items()}
        if "ack_outcome" in metadata:
            result.append((observation.partition, metadata))
    return result


def set_sent_at(env: OrderflowEnv, export_id: str, sent_at: datetime) -> None:
    # Test-only: age a SENT export instead of waiting a day for its deadline.
    with env.engine.begin() as conn:
        conn.execute(update(erp_export).where(erp_export.c.id == export_id).values(sent_at=sent_at))


def unreachable_sftp(org_id: str) -> ConnectorConfig:
    return ConnectorConfig(
        org_id=org_id,
        transport="sftp",
        export_path="/out",
        ack_path="/acks",
        host="127.0.0.1",
        port=1,  # nothing listens here: connection refused
        username="nobody",
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd0WT1QHGjVXqyLjc2ld2o4hOrpsfRskKL2mdq9yp4m",
        password_ref=f"env:ORDERFLOW_SECRET_{org_id.upper().replace('-', '_')}_UNSET_PASSWORD",
    )


# --- the definitions -----------------------------------------------------------------------------


def test_sensor_job_and_check_are_defined_as_the_contract_names_them() -> None:
    repo = definitions().get_repository_def()
    sensor = repo.get_sensor_def("erp_ack_sensor")
    assert sensor.minimum_interval_seconds == 60
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    assert repo.has_job("process_acks_job")
    assert CHECK_KEY in repo.asset_graph.asset_check_keys


# --- sensor over local folders -------------------------------------------------------------------


def test_acked_ack_is_applied_moved_and_reported(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack-D-1.json", record.id)

    result = evaluate(env)

    assert isinstance(result, dg.SensorResult)
    assert row(env, record.id).status is ExportStatus.ACKED
    assert row(env, record.id).erp_order_number == "SO-4711"
    assert sorted(p.name for p in Path(config.ack_path).iterdir()) == ["processed"]
    assert (Path(config.ack_path) / "processed" / "ack-D-1.json").is_file()
    [(partition, metadata)] = observations(env.instance)
    assert partition == "acme:D-1"
    assert metadata["status"] == "ACKED" and metadata["erp_order_number"] == "SO-4711"
    assert metadata["export_id"] == record.id
    assert check_evaluations(env.instance) == {"acme:D-1": [True]}


def test_failed_ack_fails_the_check(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack.json", record.id, status="FAILED")

    result = evaluate(env)

    assert isinstance(result, dg.SensorResult)
    failed = row(env, record.id)
    assert (failed.status, failed.error_code) == (ExportStatus.FAILED, ERP_REJECTED)
    assert "customer on credit hold" in (failed.error_message or "")
    [evaluation] = [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert evaluation.partition == "acme:D-1"


def test_nothing_to_do_skips(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    exported(env, "acme", "D-1")

    result = evaluate(env)

    assert isinstance(result, dg.SkipReason)
    assert "no acks to apply" in (result.skip_message or "")


def test_a_repeated_tick_reports_replays_and_changes_nothing(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack.json", record.id)
    evaluate(env)
    acked = row(env, record.id)

    # The ERP sends the same ack again (or a tick died before moving it).
    drop_ack(config, "ack.json", record.id)
    result = evaluate(env)

    assert isinstance(result, dg.SensorResult)
    assert row(env, record.id) == acked
    assert [m["ack_outcome"] for _, m in observations(env.instance)] == ["applied", "replayed"]


def test_tenant_isolation_in_the_sensor(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config_a = env.add_local_connector("acme")
    env.add_local_connector("globex")
    record_b = exported(env, "globex", "G-1")
    drop_ack(config_a, "ack.json", record_b.id)

    result = evaluate(env)

    assert isinstance(result, dg.SensorResult)
    assert row(env, record_b.id) == record_b
    error_dir = Path(config_a.ack_path) / "error"
    assert sorted(p.name for p in error_dir.iterdir()) == ["ack.json", "ack.json.error.txt"]
    assert "globex" not in (error_dir / "ack.json.error.txt").read_text(encoding="utf-8")
    # Reported on the asset (no partition of acme concerns it), without a word of globex.
    [(partition, metadata)] = observations(env.instance)
    assert partition is None
    assert (metadata["org_id"], metadata["reject_code"]) == ("acme", "OTHER_ORG")
    assert "globex" not in json.dumps(metadata) and "G-1" not in json.dumps(metadata)


def test_overdue_export_times_out_and_acked_one_is_untouched(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    overdue = exported(env, "acme", "D-1")
    acked = exported(env, "acme", "D-2")
    drop_ack(config, "ack.json", acked.id)
    evaluate(env)
    acked_row = row(env, acked.id)
    long_ago = datetime.now(UTC) - timedelta(days=2)
    set_sent_at(env, overdue.id, long_ago)
    set_sent_at(env, acked.id, long_ago)

    result = evaluate(env)

    assert isinstance(result, dg.SensorResult)
    timed_out = row(env, overdue.id)
    assert (timed_out.status, timed_out.error_code) == (ExportStatus.FAILED, ACK_TIMEOUT)
    assert row(env, acked.id).status is ExportStatus.ACKED
    assert row(env, acked.id).erp_order_number == acked_row.erp_order_number
    assert check_evaluations(env.instance) == {"acme:D-2": [True], "acme:D-1": [False]}


def test_work_per_tick_is_bounded(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    records = [exported(env, "acme", f"D-{n}") for n in range(3)]
    for n, record in enumerate(records):
        drop_ack(config, f"ack-{n}.json", record.id)

    evaluate(env, max_files_per_org=2)
    assert [row(env, r.id).status for r in records] == [
        ExportStatus.ACKED,
        ExportStatus.ACKED,
        ExportStatus.SENT,
    ]
    evaluate(env, max_files_per_org=2)
    assert all(row(env, r.id).status is ExportStatus.ACKED for r in records)


def test_unreachable_dropzone_is_reported_not_raised(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    broken = unreachable_sftp("globex")
    env.configs.upsert(broken)

    result, cursor = evaluate_with_cursor(env, None)

    # The first tick reports the problem on the asset; later ticks only log it.
    assert isinstance(result, dg.SensorResult)
    [(partition, metadata)] = observations(env.instance)
    assert (partition, metadata["org_id"], metadata["ack_outcome"]) == (
        None,
        "globex",
        "folder_error",
    )
    again, _ = evaluate_with_cursor(env, cursor)
    assert isinstance(again, dg.SkipReason)
    assert "org globex" in (again.skip_message or "")


def test_check_evaluations_are_reported_once_per_partition(orderflow_env: OrderflowEnv) -> None:
    # Dagster 1.13 stores one run-less evaluation per partition; a second fails the tick.
    def evaluation(partition: str, passed: bool) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=EXPORT_JSON, check_name=ERP_ACK_CHECK, passed=passed, partition=partition
        )

    observation = dg.AssetObservation(asset_key=EXPORT_JSON, partition="acme:D-1")
    first = [evaluation("acme:D-1", False), observation, evaluation("acme:D-1", True)]
    kept = once_per_partition(orderflow_env.instance, list(first))
    assert kept == [observation, first[2]]  # the newest state of the tick wins
    for event in kept:
        orderflow_env.instance.report_runless_asset_event(event)

    later = [evaluation("acme:D-1", False), evaluation("acme:D-2", True), observation]
    assert once_per_partition(orderflow_env.instance, list(later)) == later[1:]


# --- sensor over SFTP ----------------------------------------------------------------------------


@pytest.fixture
def sftp_acme(orderflow_env: OrderflowEnv, sshd_server: SshdServer) -> Iterator[ConnectorConfig]:
    root = sshd_server.root / f"t{os.getpid()}_{time.monotonic_ns()}"
    outbox, acks = root / "acme" / "outbox", root / "acme" / "acks"
    outbox.mkdir(parents=True)
    acks.mkdir(parents=True)
    config = sshd_server.connector_config("acme", str(outbox), str(acks))
    orderflow_env.configs.upsert(config)
    yield config


def test_sftp_ack_is_applied_and_moved(
    orderflow_env: OrderflowEnv, sftp_acme: ConnectorConfig
) -> None:
    env = orderflow_env
    record = exported(env, "acme", "D-1")
    assert (Path(sftp_acme.export_path) / record.filename).is_file()
    drop_ack(sftp_acme, "ack-D-1.json", record.id)
    (Path(sftp_acme.ack_path) / ".partial.json.tmp").write_text("{", encoding="utf-8")

    result = evaluate(env)

    assert isinstance(result, dg.SensorResult)
    assert row(env, record.id).status is ExportStatus.ACKED
    acks = Path(sftp_acme.ack_path)
    assert (acks / "processed" / "ack-D-1.json").is_file()
    assert sorted(p.name for p in acks.iterdir()) == [".partial.json.tmp", "processed"]
    assert check_evaluations(env.instance) == {"acme:D-1": [True]}


def test_sftp_malformed_and_foreign_acks_go_to_error(
    orderflow_env: OrderflowEnv, sftp_acme: ConnectorConfig
) -> None:
    env = orderflow_env
    env.add_local_connector("globex")
    foreign = exported(env, "globex", "G-1")
    (Path(sftp_acme.ack_path) / "broken.json").write_bytes(b"\xef\xbb\xbf{not json")
    drop_ack(sftp_acme, "foreign.json", foreign.id)

    result = evaluate(env, settle_seconds=0)

    assert isinstance(result, dg.SensorResult)  # both reported on the asset
    errors = Path(sftp_acme.ack_path) / "error"
    assert sorted(p.name for p in errors.iterdir()) == [
        "broken.json",
        "broken.json.error.txt",
        "foreign.json",
        "foreign.json.error.txt",
    ]
    assert "not valid JSON" in (errors / "broken.json.error.txt").read_text(encoding="utf-8")
    assert row(env, foreign.id) == foreign


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port whose listener accepts connections (the kernel's backlog) and never speaks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_a_hanging_server_does_not_hold_up_the_other_orgs(
    orderflow_env: OrderflowEnv, silent_listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = orderflow_env
    monkeypatch.setenv("ORDERFLOW_SECRET_AAA_HANG_PASSWORD", "not-a-secret")
    hanging = replace(
        unreachable_sftp("aaa-hang"),  # sorts first: its pass starts before acme's
        port=silent_listener,
        password_ref="env:ORDERFLOW_SECRET_AAA_HANG_PASSWORD",
    )
    env.configs.upsert(hanging)
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack.json", record.id)

    # The dropzone's own timeouts would let this org alone outlast the daemon's 60 s limit: the
    # org's budget is what ends the wait.
    patient = DropzoneResource(connect_timeout_seconds=120, operation_timeout_seconds=120)
    result, cursor = evaluate_with_cursor(env, None, patient, org_time_budget_seconds=2)

    assert isinstance(result, dg.SensorResult)
    assert row(env, record.id).status is ExportStatus.ACKED
    folder_errors = [m for _, m in observations(env.instance) if m["ack_outcome"] == "folder_error"]
    assert [(m["org_id"], m["error_code"]) for m in folder_errors] == [("aaa-hang", "TIMEOUT")]
    # The next tick serves the orgs that answered first.
    assert AckCursor.parse(cursor).slow == ["aaa-hang"]


def test_malformed_ack_is_judged_on_the_tick_after_it_settled_and_shown(
    orderflow_env: OrderflowEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    acks = Path(config.ack_path)
    (acks / "half.json").write_bytes(b'{"export_id": ')  # fresh: may still be being written
    (acks / "pipe.json").unlink(missing_ok=True)
    os.mkfifo(acks / "pipe.json")

    capsys.readouterr()
    first, cursor = evaluate_with_cursor(env, None)
    first_log = capsys.readouterr().err  # the sensor's log, as the tick's log shows it
    assert (acks / "half.json").is_file() and not (acks / "error").exists()
    assert first_log.count("skipping pipe.json: a FIFO") == 1

    second, _ = evaluate_with_cursor(env, cursor)
    second_log = capsys.readouterr().err

    # Unchanged since the last tick: finished, and refused where a person and the CLI see it.
    assert sorted(p.name for p in (acks / "error").iterdir()) == [
        "half.json",
        "half.json.error.txt",
    ]
    assert isinstance(second, dg.SensorResult)
    [(partition, metadata)] = observations(env.instance)
    assert partition is None
    assert (metadata["org_id"], metadata["reject_code"]) == ("acme", "MALFORMED")
    assert "ERROR - ack half.json of org acme rejected (MALFORMED)" in second_log
    assert "skipping" not in second_log  # the FIFO was reported once, on the first tick


def test_rotation_serves_answering_orgs_before_the_ones_that_hung(tmp_path: Path) -> None:
    from orderflow_exports.application.acks.processor import rotate

    configs = [
        ConnectorConfig(org, "local", str(tmp_path / org / "o"), str(tmp_path / org / "a"))
        for org in ("a", "b", "c", "d")
    ]

    def order(after: str | None, slow: list[str]) -> list[str]:
        return [c.org_id for c in rotate(configs, after, slow)]

    assert order(None, []) == ["a", "b", "c", "d"]
    assert order("b", []) == ["c", "d", "a", "b"]
    assert order("b", ["c"]) == ["d", "a", "b", "c"]
    assert AckCursor.parse("b").after == "b"  # the plain org id older ticks stored
    assert AckCursor.parse("{broken").after == "{broken"
    assert AckCursor.parse(AckCursor("c", slow=["a"]).dump([])).slow == ["a"]


# --- process_acks_job and the check --------------------------------------------------------------


def test_process_acks_job_applies_and_reports(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack.json", record.id)

    job = definitions().resolve_job_def("process_acks_job")
    result = job.execute_in_process(instance=env.instance, raise_on_error=False)

    assert result.success
    assert row(env, record.id).status is ExportStatus.ACKED
    kinds = [e.event_type_value for e in result.all_events]
    assert "ASSET_OBSERVATION" in kinds and "ASSET_CHECK_EVALUATION" in kinds
    assert check_evaluations(env.instance, result.run_id) == {"acme:D-1": [True]}


def test_process_acks_job_fails_when_a_dropzone_is_unreachable(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack.json", record.id)
    env.configs.upsert(unreachable_sftp("globex"))

    job = definitions().resolve_job_def("process_acks_job")
    result = job.execute_in_process(instance=env.instance, raise_on_error=False)

    # The reachable org is done; the run still fails, so CI and operators notice the other.
    assert not result.success
    assert row(env, record.id).status is ExportStatus.ACKED
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "org globex" in str(failure.event_specific_data)


def test_erp_ack_check_reads_the_current_row(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    defs = definitions()
    check_job = dg.define_asset_job(
        "check_erp_ack",
        selection=dg.AssetSelection.checks(CHECK_KEY),
        partitions_def=approved_drafts_partitions,
    )
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[check_job])).resolve_job_def(
        "check_erp_ack"
    )

    waiting = job.execute_in_process(instance=env.instance, tags=PARTITION_TAG)
    [evaluation] = waiting.get_asset_check_evaluations()
    # Waiting for the ack within the deadline is not a failure.
    assert evaluation.passed
    assert evaluation.metadata["ack_state"].value == "WAITING_FOR_ACK"

    drop_ack(config, "ack.json", record.id)
    evaluate(env)
    done = job.execute_in_process(instance=env.instance, tags=PARTITION_TAG)
    [evaluation] = done.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["erp_order_number"].value == "SO-4711"
    assert evaluation.metadata["ack_state"].value == "ACKED"


# --- the real daemon and the real CLI ----------------------------------------------------------


def _subprocess_env(env: OrderflowEnv, dagster_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ORDERFLOW_DATABASE_URL": env.database_url,
        "ORDERFLOW_EXPORT_STORE": str(env.store_root),
        # The code location under test, whatever else is installed.
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_real_daemon_applies_an_ack(orderflow_env: OrderflowEnv, tmp_path: Path) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack-D-1.json", record.id)
    daemon_home = tmp_path / "daemon_home"
    daemon_home.mkdir()
    log_path = tmp_path / "daemon.log"

    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [_bin("dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
            cwd=REPO_ROOT,
            env=_subprocess_env(env, daemon_home),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            # The first tick comes ~3-4 s after start (FACTS.md); the bound only ends a hang.
            # Wait for the row and for the tick's events, which the daemon reports after the
            # evaluation returns: stopping it in between would lose them.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and daemon.poll() is None:
                if row(env, record.id).status is not ExportStatus.SENT and _has_observation(
                    daemon_home
                ):
                    break
                time.sleep(0.5)
        finally:
            _stop(daemon)
    output = log_path.read_text(encoding="utf-8", errors="replace")[-5000:]

    assert row(env, record.id).status is ExportStatus.ACKED, output
    assert row(env, record.id).erp_order_number == "SO-4711"
    assert (Path(config.ack_path) / "processed" / "ack-D-1.json").is_file()
    assert not (Path(config.ack_path) / "ack-D-1.json").exists()
    # The tick's events reached the daemon's instance.
    with dg.DagsterInstance.from_config(str(daemon_home)) as instance:
        assert [p for p, _ in observations(instance)] == ["acme:D-1"], output
        assert check_evaluations(instance) == {"acme:D-1": [True]}


def _has_observation(dagster_home: Path) -> bool:
    if not (dagster_home / "history").exists():
        return False  # the daemon has not created its instance storage yet
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return bool(observations(instance))


@pytest.mark.slow
def test_cli_runs_process_acks_job(orderflow_env: OrderflowEnv, tmp_path: Path) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    record = exported(env, "acme", "D-1")
    drop_ack(config, "ack.json", record.id)
    cli_home = tmp_path / "cli_home"
    cli_home.mkdir()

    completed = subprocess.run(
        [_bin("dagster"), "job", "execute", "-m", "orderflow_exports", "-j", "process_acks_job"],
        cwd=REPO_ROOT,
        env=_subprocess_env(env, cli_home),
        capture_output=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-5000:]
    assert row(env, record.id).status is ExportStatus.ACKED
    assert (Path(config.ack_path) / "processed" / "ack.json").is_file()
