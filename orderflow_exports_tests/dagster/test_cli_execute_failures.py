"""What CI sees: `dagster job execute` exits non-zero when the run fails, and the ack job runs.

The success path of `export_drafts_job` is in ``test_cli.py``. Each case here is one real
subprocess (in-process executor, ~4 s).
"""

import json
import os
import subprocess

import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import dagster_job_execute

pytestmark = pytest.mark.slow

EXPORT_JOB = "export_drafts_job"


def _output(done: subprocess.CompletedProcess[str]) -> str:
    return f"{done.stdout}\n{done.stderr}"


def test_unknown_partition_exits_non_zero(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    env.add_drafts(SampleDraft("acme", "D-1"))
    done = dagster_job_execute(env, EXPORT_JOB, {"dagster/partition": "acme:D-404"})
    assert done.returncode != 0, _output(done)[-3000:]
    assert "acme:D-404" in _output(done)
    assert env.exports("acme:D-1") == [] and os.listdir(env.outbox("acme")) == []


def test_refused_draft_exits_non_zero_with_the_reason(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1", status="DRAFT"))
    done = dagster_job_execute(env, EXPORT_JOB, {"dagster/partition": key})
    assert done.returncode != 0, _output(done)[-3000:]
    assert "only APPROVED drafts are exported" in _output(done)
    assert env.exports(key) == [] and os.listdir(env.outbox("acme")) == []


def test_dropzone_error_exits_non_zero_and_fails_the_row(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    missing = env.dropzones / "acme" / "not-mounted"
    env.add_local_connector("acme", export_path=str(missing))
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    done = dagster_job_execute(env, EXPORT_JOB, {"dagster/partition": key})
    assert done.returncode != 0, _output(done)[-3000:]
    assert f"{key}: CONFIG (permanent)" in _output(done)
    [row] = env.exports(key)
    assert row.status is ExportStatus.FAILED and row.error_code == "CONFIG"
    # CI's retry is the same command again, once the cause is fixed: a new attempt goes out.
    env.add_local_connector("acme")
    again = dagster_job_execute(env, EXPORT_JOB, {"dagster/partition": key})
    assert again.returncode == 0, _output(again)[-3000:]
    first, second = env.exports(key)
    assert first == row and second.status is ExportStatus.SENT and second.attempt == 2
    assert os.listdir(env.outbox("acme")) == [second.filename]


def test_process_acks_job_runs_from_the_cli(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    config = env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert env.run_export([key]).success
    [sent] = env.exports(key)
    ack: dict[str, object] = {
        "export_id": sent.id,
        "status": "ACKED",
        "erp_order_number": "SO-4711",
        "message": None,
        "errors": [],
        "received_at": "2026-11-26T10:00:00Z",
    }
    ack_dir = env.dropzones / "acme" / "acks"
    assert config.ack_path == str(ack_dir)
    (ack_dir / "ack-D-1.json").write_text(json.dumps(ack))
    done = dagster_job_execute(env, "process_acks_job")
    assert done.returncode == 0, _output(done)[-3000:]
    [row] = env.exports(key)
    assert row.status is ExportStatus.ACKED and row.erp_order_number == "SO-4711"
    assert (ack_dir / "processed" / "ack-D-1.json").is_file()
    assert not (ack_dir / "ack-D-1.json").exists()
