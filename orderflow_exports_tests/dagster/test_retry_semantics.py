"""Retry without duplicates (issue 6): crashes, runs in flight, transient and permanent errors.

The cases ``test_export_job.py`` already covers (re-materializing a SENT draft, force, a FAILED
export retried, batch isolation) are not repeated here. Crashes are real: the run's process is
SIGKILLed at the named point (see ``support/fault_injection.py``). The only injected fault is the
unreachable server, which a local folder cannot produce.
"""

import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.defs.assets import EXPORT_RETRY_POLICY
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.naming import DraftRef, export_filename, temp_filename
from orderflow_exports.domain.records import ExportRecord, NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.fault_injection import outage_publish, set_outage
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import run_command, subprocess_env

NO_RUN_RETRY_TAG = "dagster/retry_on_asset_or_op_failure"


def _events(result: dg.ExecuteInProcessResult, event_type: str) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type_value == event_type]


def _export_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The metadata of export_json's materialization (one per partition, all the same)."""
    mats = [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in _events(result, "ASSET_MATERIALIZATION")
        if e.asset_key == dg.AssetKey("export_json")
    ]
    assert mats
    return {k: v.value for k, v in mats[0].metadata.items()}


def _step_failure(result: dg.ExecuteInProcessResult) -> str:
    [failure] = _events(result, "STEP_FAILURE")
    assert failure.step_key == "export_json"
    return str(failure.event_specific_data)


def _final_files(folder: Path) -> list[str]:
    """What a receiver would pick up: every file but dot-files (our temp files are dot-files)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _crash_export(env: OrderflowEnv, key: str, point: str) -> ExportRecord:
    """Run the export in a child process that is SIGKILLed at ``point``; the row it left."""
    done = run_command(
        [
            sys.executable,
            "-m",
            "orderflow_exports_tests.support.fault_injection",
            "crash",
            point,
            key,
        ],
        subprocess_env(env),
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-3000:]
    [row] = env.exports(key)
    assert row.status is ExportStatus.PENDING
    return row


@pytest.mark.slow  # a real child process
def test_crash_between_publish_and_sent_is_recovered_without_a_second_copy(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=4))
    pending = _crash_export(env, key, "mark_sent")
    outbox = env.outbox("acme")
    assert _final_files(outbox) == [pending.filename]  # the ERP already has it
    dead_run = env.instance.get_run_by_id(pending.dagster_run_id or "")
    assert dead_run is not None and dead_run.status is dg.DagsterRunStatus.STARTED

    # Until the dead run is known to be dead, its PENDING export counts as in flight.
    refused = env.run_export([key])
    assert not refused.success
    assert "already in flight" in _step_failure(refused)
    assert env.exports(key) == [pending]

    # What run monitoring / the code server reports for a run whose process died.
    env.instance.report_run_failed(dead_run, "run worker was killed")
    recovered = env.run_export([key])
    assert recovered.success
    [row] = env.exports(key)
    assert row.id == pending.id and row.status is ExportStatus.SENT and row.sent_at is not None
    assert _final_files(outbox) == [pending.filename]  # no second copy
    meta = _export_metadata(recovered)
    assert meta["action"] == "recovered" and meta["export_id"] == pending.id
    # The spool copy the dead run left is archived now, byte for byte.
    assert Path(row.storage_key).read_bytes() == (outbox / row.filename).read_bytes()

    # And it stays recovered: the next materialization sends nothing.
    again = env.run_export([key])
    assert _export_metadata(again)["action"] == "already_sent"
    assert _final_files(outbox) == [pending.filename]


@pytest.mark.slow  # a real child process
def test_crash_before_the_final_name_fails_interrupted_and_sends_a_new_attempt(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1", lines=4))
    pending = _crash_export(env, key, "rename")
    outbox = env.outbox("acme")
    leftover = outbox / temp_filename(pending.filename)
    assert leftover.is_file() and _final_files(outbox) == []  # a half-done upload, invisible
    dead_run = env.instance.get_run_by_id(pending.dagster_run_id or "")
    assert dead_run is not None
    env.instance.report_run_failed(dead_run, "run worker was killed")
    # Make the leftover older than the stale-temp age, so the next attempt sweeps it.
    an_hour_and_more = time.time() - 3700
    os.utime(leftover, (an_hour_and_more, an_hour_and_more))

    result = env.run_export([key])
    assert result.success
    first, second = env.exports(key)
    assert first.id == pending.id and first.status is ExportStatus.FAILED
    assert first.error_code == "INTERRUPTED" and dead_run.run_id in (first.error_message or "")
    assert second.status is ExportStatus.SENT and second.attempt == 2
    assert second.id != first.id and second.dagster_run_id == result.run_id
    assert os.listdir(outbox) == [second.filename]  # one final file, leftover swept
    assert _export_metadata(result)["action"] == "sent"


def _pending_row(env: OrderflowEnv, key: str, run_id: str) -> ExportRecord:
    """A PENDING row as a run leaves it after inserting it (the file is not written yet)."""
    ref = DraftRef.from_partition_key(key)
    export_id = str(uuid.uuid4())
    created_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    filename = export_filename(ref, created_at, export_id)
    config = env.configs.get(ref.org_id)
    assert config is not None
    return env.ledger.create_pending(
        NewExport(
            id=export_id,
            ref=ref,
            attempt=1,
            filename=filename,
            dropzone_path=f"{config.export_path}/{filename}",
            storage_key=str(env.store_root / "exports" / ref.org_id / ref.draft_order_id),
            content_sha256="0" * 64,
            byte_size=1,
            line_count=1,
            forced=False,
            dagster_run_id=run_id,
            created_at=created_at,
        )
    )


def test_pending_export_of_an_active_run_is_not_sent_twice(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    other = dg.DagsterRun(job_name="export_drafts_job", status=dg.DagsterRunStatus.STARTED)
    env.instance.add_run(other)
    pending = _pending_row(env, key, other.run_id)

    result = env.run_export([key])
    assert not result.success
    message = _step_failure(result)
    assert "already in flight" in message and other.run_id in message
    assert "AlreadyInFlight (permanent)" in message
    assert not _events(result, "STEP_UP_FOR_RETRY")  # not retried inside the run either
    assert env.exports(key) == [pending]  # untouched
    assert os.listdir(env.outbox("acme")) == []

    # Once that run has ended without publishing, the next one takes over.
    env.instance.report_run_failed(other, "run worker lost")
    assert env.run_export([key]).success
    first, second = env.exports(key)
    assert first.status is ExportStatus.FAILED and first.error_code == "INTERRUPTED"
    assert second.status is ExportStatus.SENT and second.attempt == 2
    assert os.listdir(env.outbox("acme")) == [second.filename]


def test_transient_error_is_retried_inside_the_run(
    orderflow_env: OrderflowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    switch = tmp_path / "outage"
    set_outage(switch, failures=1)  # the first connection is refused, the next one works
    monkeypatch.setattr(LocalDropzoneSession, "publish", outage_publish(switch))

    result = env.run_export([key])
    assert result.success
    [retry] = _events(result, "STEP_UP_FOR_RETRY")
    assert retry.step_key == "export_json"
    assert "CONNECTION (transient)" in str(retry.event_specific_data)
    assert not _events(result, "STEP_FAILURE")
    first, second = env.exports(key)
    assert first.status is ExportStatus.FAILED and first.error_code == "CONNECTION"
    assert "(transient)" in (first.error_message or "")
    assert second.status is ExportStatus.SENT and second.attempt == 2
    assert os.listdir(env.outbox("acme")) == [second.filename]
    meta = _export_metadata(result)
    assert meta["export_id"] == second.id and meta["attempt"] == 2
    assert EXPORT_RETRY_POLICY.max_retries >= 1  # what made the second try


def test_permanent_error_fails_at_once_with_the_reason(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    missing = env.dropzones / "acme" / "not-there"
    env.add_local_connector("acme", export_path=str(missing))
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))

    result = env.run_export([key])
    assert not result.success
    assert not _events(result, "STEP_UP_FOR_RETRY")
    message = _step_failure(result)
    assert f"{key}: CONFIG (permanent)" in message and str(missing) in message
    [row] = env.exports(key)
    assert row.status is ExportStatus.FAILED and row.error_code == "CONFIG"
    assert "(permanent)" in (row.error_message or "")
    [run_failure] = _events(result, dg.DagsterEventType.RUN_FAILURE.value)
    assert "export_json" in (run_failure.message or "")
    # The daemon must not retry a run that would only fail the same way again.
    run = env.instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags.get(NO_RUN_RETRY_TAG) == "false"


def test_rerunning_every_partition_resends_only_failed_and_missing(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex", export_path=str(env.dropzones / "missing"))
    sent, acked, failed, fresh = env.add_drafts(
        SampleDraft("acme", "A-1"),
        SampleDraft("acme", "A-2"),
        SampleDraft("globex", "G-1"),
        SampleDraft("acme", "A-3"),
    )
    assert not env.run_export([sent, acked, failed]).success
    [acked_row] = env.exports(acked)
    assert env.ledger.mark_acked(
        acked_row.id,
        expected=ExportStatus.SENT,
        erp_order_number="SO-1",
        at=datetime.now(UTC),
    )
    env.add_local_connector("globex")  # the cause of the failure is fixed

    # A backfill over everything (what "all partitions" launches as one run).
    result = env.run_export([sent, acked, failed, fresh])
    assert result.success
    assert [[r.status for r in env.exports(k)] for k in (sent, acked, failed, fresh)] == [
        [ExportStatus.SENT],
        [ExportStatus.ACKED],
        [ExportStatus.FAILED, ExportStatus.SENT],
        [ExportStatus.SENT],
    ]
    meta = _export_metadata(result)
    assert meta["already_sent_count"] == 2 and meta["sent_count"] == 2
    assert len(_final_files(env.outbox("acme"))) == 3
    assert len(_final_files(env.outbox("globex"))) == 1


def test_mixed_batch_retries_the_transient_failure_but_not_the_permanent_one(
    orderflow_env: OrderflowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_local_connector("globex", export_path=str(env.dropzones / "globex" / "not-there"))
    keys = env.add_drafts(SampleDraft("acme", "A-1"), SampleDraft("globex", "G-1"))
    switch = tmp_path / "outage"
    set_outage(switch, failures=1)  # acme's first publish meets the outage
    monkeypatch.setattr(LocalDropzoneSession, "publish", outage_publish(switch))

    result = env.run_export(keys)
    assert not result.success  # globex's permanent failure remains
    assert len(_events(result, "STEP_UP_FOR_RETRY")) == 1  # the transient one was retried
    acme_first, acme_second = env.exports(keys[0])
    assert acme_first.error_code == "CONNECTION" and acme_second.status is ExportStatus.SENT
    # The step retry did not make a second attempt at the permanently failing draft.
    [globex] = env.exports(keys[1])
    assert globex.status is ExportStatus.FAILED and globex.error_code == "CONFIG"
    assert "already failed permanently in this run" in _step_failure(result)


def test_the_sweep_leaves_the_temp_file_of_a_claimed_rename_to_the_settle_rule(
    orderflow_env: OrderflowEnv,
) -> None:
    # A run stalled for over the stale-temp age between taking its rename right and renaming:
    # its temp file is the evidence that the rename did not happen. Swept by another draft's
    # run, the draft would look delivered (SENT, unconfirmed) although nothing reached the ERP.
    env = orderflow_env
    env.add_local_connector("acme")
    stalled_key, other_key = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("acme", "D-2"))
    stalled = dg.DagsterRun(job_name="export_drafts_job", status=dg.DagsterRunStatus.STARTED)
    env.instance.add_run(stalled)
    pending = _pending_row(env, stalled_key, stalled.run_id)
    assert env.ledger.mark_renaming(pending.id, at=datetime.now(UTC))
    temp = env.outbox("acme") / temp_filename(pending.filename)
    temp.write_bytes(b"{}")
    long_ago = time.time() - 3700
    os.utime(temp, (long_ago, long_ago))

    assert env.run_export([other_key]).success  # sweeps the export folder
    assert temp.is_file()

    env.instance.report_run_canceled(stalled, "force-terminated by an operator")
    assert env.run_export([stalled_key]).success
    first, second = env.exports(stalled_key)
    assert first.status is ExportStatus.FAILED and first.error_code == "INTERRUPTED"
    assert first.sent_at is None
    assert second.status is ExportStatus.SENT
    [other_row] = env.exports(other_key)
    assert sorted(os.listdir(env.outbox("acme"))) == sorted([other_row.filename, second.filename])
