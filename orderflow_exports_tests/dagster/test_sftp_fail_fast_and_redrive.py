"""Fail-fast per login and re-drive after an outage, against the real test sshd.

A refused connection is real: the connector points at a loopback port nothing listens on, and
the outage ends when the connector points at the running server again. Time for the backoff is
passed to the sensor's planner, never slept.
"""

import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from orderflow_exports import defs
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.defs.assets import BATCH_INFO_LOGGER
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.sensors import evaluate_approved_drafts
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.network import free_port
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.sshd import SshdServer


def _outbox(sshd: SshdServer, org_id: str) -> Path:
    folder = sshd.root / f"{org_id}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    (sshd.root / f"{folder.name}-acks").mkdir()  # beside the outbox: never inside it
    return folder


def _configure(env: OrderflowEnv, sshd: SshdServer, org_id: str, **overrides: object) -> Path:
    outbox = _outbox(sshd, org_id)
    env.configs.upsert(sshd.connector_config(org_id, str(outbox), f"{outbox}-acks", **overrides))
    return outbox


def _messages(env: OrderflowEnv, result: dg.ExecuteInProcessResult) -> list[str]:
    """Every line the run logged, and the lines of its step errors (per-draft messages)."""
    lines: list[str] = []
    for entry in env.instance.all_logs(result.run_id):
        lines.extend(entry.user_message.splitlines())
        error = getattr(
            entry.dagster_event and entry.dagster_event.event_specific_data, "error", None
        )
        if error is not None:
            lines.extend(error.message.splitlines())
    return lines


def _detail_of(env: OrderflowEnv, partition_key: str) -> list[str]:
    """The metadata values recorded on the partition of ``export_json``: its materialization,
    or, when the run failed, the observation that stands in for it."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("export_json"), asset_partitions=[partition_key]
    )
    events = [
        *(
            r.asset_materialization
            for r in env.instance.fetch_materializations(records_filter, limit=10).records
        ),
        *(
            r.asset_observation
            for r in env.instance.fetch_observations(records_filter, limit=10).records
        ),
    ]
    assert events, f"nothing recorded on {partition_key}"
    return [
        f"{name}: {value.value}"
        for event in events
        if event is not None
        for name, value in event.metadata.items()
    ]


def _evaluate_at(env: OrderflowEnv, now: datetime) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=env.instance, resources={"database": DatabaseResource()}, definitions=defs
    ) as context:
        return evaluate_approved_drafts(context, DatabaseResource(), now)


def _json_files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))


def test_a_wrong_key_of_one_org_does_not_stop_another_org_on_the_same_login_name(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer, caplog: pytest.LogCaptureFixture
) -> None:
    env = orderflow_env
    caplog.set_level(logging.INFO, logger=BATCH_INFO_LOGGER.name)
    wrong_key = sshd_server.key_ref("orga", sshd_server.unauthorized_key)
    _configure(env, sshd_server, "orga", private_key_ref=wrong_key)
    outbox_b = _configure(env, sshd_server, "orgb")  # same host and user name, its own key
    key_a, key_b = env.add_drafts(SampleDraft("orga", "A-1"), SampleDraft("orgb", "B-1"))

    result = env.run_export([key_a, key_b])
    assert not result.success  # orga's login is refused
    [row_a] = env.exports(key_a)
    assert row_a.status is ExportStatus.FAILED and row_a.error_code == "AUTH"
    [row_b] = env.exports(key_b)
    assert row_b.status is ExportStatus.SENT
    assert _json_files(outbox_b) == [row_b.filename]
    # In a batch, a draft's detail is on its partition's materialization and its info lines go
    # to the batch logger: none of it may name the other org or its key.
    batch_lines = [r.getMessage() for r in caplog.records if r.name == BATCH_INFO_LOGGER.name]
    detail_b = _detail_of(env, key_b)
    assert any(row_b.filename in line for line in detail_b), detail_b
    about_b = [
        line for line in [*_messages(env, result), *batch_lines, *detail_b] if "orgb" in line
    ]
    assert any(line in detail_b for line in about_b), about_b
    assert any(line in batch_lines for line in about_b), batch_lines
    for line in about_b:
        assert "orga" not in line and wrong_key.removeprefix("file:") not in line, line
    requests = SqlExportRequests(env.engine)
    record_a = requests.get(DraftRef("orga", "A-1"))
    record_b = requests.get(DraftRef("orgb", "B-1"))
    assert record_a is not None and record_a.last_outcome is RequestOutcome.PERMANENT
    assert record_a.needs_person_since is not None  # a wrong key is not re-driven
    assert record_b is not None and record_b.last_outcome is RequestOutcome.SENT


def test_drafts_of_one_login_fail_fast_and_another_org_never_sees_its_details(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer
) -> None:
    # Secret references are scoped per org, so two orgs never share credentials: fail-fast
    # stops the other drafts of the same login only, and each org meets its own failure.
    env = orderflow_env
    _configure(
        env,
        sshd_server,
        "acme",
        private_key_ref=sshd_server.key_ref("acme", sshd_server.unauthorized_key),
    )
    acme2_key = sshd_server.key_ref("acme2", sshd_server.unauthorized_key)
    _configure(env, sshd_server, "acme2", private_key_ref=acme2_key)
    first, second, other = env.add_drafts(
        SampleDraft("acme", "D-1"), SampleDraft("acme", "D-2"), SampleDraft("acme2", "X-1")
    )

    result = env.run_export([first, second, other])
    assert not result.success
    assert [r.error_code for r in env.exports(first)] == ["AUTH"]
    assert env.exports(second) == []  # not attempted: no row
    assert [r.error_code for r in env.exports(other)] == ["AUTH"]  # its own attempt
    endpoint = f"sftp://{sshd_server.username}@{sshd_server.host}:{sshd_server.port}"
    reported = {line for line in _messages(env, result) if line.startswith(f"{second}: AUTH")}
    prefix = (
        f"{second}: AUTH (permanent): [AUTH] not attempted: the login to {endpoint} already "
        "failed in this run with AUTH (permanent)"
    )
    assert reported and all(line.startswith(prefix) for line in reported), reported
    for line in _messages(env, result):
        if "acme2" in line:
            assert "acme:" not in line and "/acme/" not in line, line
    record = SqlExportRequests(env.engine).get(DraftRef("acme", "D-2"))
    assert record is not None and record.last_outcome is RequestOutcome.PERMANENT
    assert record.last_reason is not None and "not attempted" in record.last_reason


def test_an_outage_makes_no_rows_and_the_sensor_redrives_the_draft_once_it_ends(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer
) -> None:
    env = orderflow_env
    closed_port = free_port()  # nothing listens here: every connection is refused
    outbox = _configure(env, sshd_server, "acme", port=closed_port)
    [key] = env.add_drafts(SampleDraft("acme", "D-1"), partitions=False)
    ref = DraftRef("acme", "D-1")
    requests = SqlExportRequests(env.engine)
    start = datetime.now(UTC)
    first = _evaluate_at(env, start)
    assert isinstance(first, dg.SensorResult)
    env.add_partitions([key])

    # The run tries the draft once per step try (the in-run RetryPolicy): every connection
    # is refused before a document is built or a row is written.
    outage = env.run_export([key])
    assert not outage.success
    retries = [e for e in outage.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries  # several tries met the outage
    assert env.exports(key) == []
    refused = [line for line in _messages(env, outage) if "export failed: [CONNECTION]" in line]
    assert len(refused) == len(retries) + 1  # one per try, each refused at connect
    record = requests.get(ref)
    assert record is not None and record.last_outcome is RequestOutcome.TRANSIENT
    assert record.next_due_at is not None and record.needs_person_since is None
    assert "Connection refused" in (record.last_reason or "")

    # Not before its backoff has passed.
    assert isinstance(_evaluate_at(env, record.next_due_at - timedelta(seconds=1)), dg.SkipReason)
    back = sshd_server.connector_config("acme", str(outbox), f"{outbox}-acks")
    env.configs.upsert(back)  # the outage is over: the server answers again
    redrive = _evaluate_at(env, record.next_due_at)
    assert isinstance(redrive, dg.SensorResult)
    [run] = redrive.run_requests or []
    assert run.partition_key == key and run.run_key != first.run_requests[0].run_key  # type: ignore[union-attr]
    assert env.run_export([key]).success
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT and row.attempt == 1
    assert _json_files(outbox) == [row.filename]
    done = requests.get(ref)
    assert done is not None and done.last_outcome is RequestOutcome.SENT
    assert done.next_due_at is None and done.redrive_count == 1

    # Sent exactly once: later ticks request nothing, another materialization sends nothing.
    assert isinstance(_evaluate_at(env, start + timedelta(days=1)), dg.SkipReason)
    assert env.run_export([key]).success
    assert len(env.exports(key)) == 1 and _json_files(outbox) == [row.filename]
