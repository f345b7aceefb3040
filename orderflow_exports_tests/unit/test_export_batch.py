"""The batch use case on stubs: what it archives, reports and says about a run's failures."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from orderflow_exports.application.export_batch import ExportBatch
from orderflow_exports.application.export_service import ExportOutcome, ExportService
from orderflow_exports.application.planning import (
    PlannedRequest,
    RequestPlan,
    plan_runs,
)
from orderflow_exports.domain.errors import AlreadyInFlight, ArchiveConflict, ErrorCode, ExportError
from orderflow_exports.domain.export_requests import RequestOutcome, RequestReason
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportRequests, ExportStore
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _record(ref: DraftRef, export_id: str) -> ExportRecord:
    return ExportRecord(
        id=export_id,
        org_id=ref.org_id,
        draft_order_id=ref.draft_order_id,
        connector_type="DROPZONE_JSON_V1",
        attempt=1,
        status=ExportStatus.SENT,
        filename=f"{export_id}.json",
        dropzone_path=f"/dz/{export_id}.json",
        storage_key=f"/store/{export_id}.json",
        content_sha256="0" * 64,
        byte_size=2,
        line_count=0,
        forced=False,
        erp_order_number=None,
        error_code=None,
        error_message=None,
        dagster_run_id="run",
        created_at=NOW,
        sent_at=NOW,
        acked_at=None,
        updated_at=NOW,
    )


class _Store:
    """An export store keeping what was put, failing for the export ids in ``conflicts``."""

    def __init__(self, conflicts: frozenset[str] = frozenset()) -> None:
        self.put: list[str] = []
        self.conflicts = conflicts

    def for_org(self, org_id: str) -> _Store:
        return self

    def key_for(self, ref: DraftRef, export_id: str) -> str:
        return f"{ref.org_id}/{ref.draft_order_id}/{export_id}.json"

    def put_file(self, key: str, source: Path, *, sha256: str, export_id: str) -> None:
        if export_id in self.conflicts:
            raise ArchiveConflict(f"{key} already holds different bytes")
        self.put.append(key)

    def exists(self, key: str) -> bool:
        return key in self.put


class _Service:
    """Exports by a table: an outcome with a spool file, or the error to raise."""

    def __init__(self, tmp_path: Path, results: dict[str, str | Exception]) -> None:
        self.tmp_path = tmp_path
        self.results = results

    def export(self, ref: DraftRef, **_: Any) -> ExportOutcome:
        result = self.results[ref.partition_key]
        if isinstance(result, Exception):
            raise result
        spool = self.tmp_path / f"{result}.json"
        spool.write_text("{}")
        return ExportOutcome(ref, "sent", _record(ref, result), spool)


class _Requests:
    def __init__(self) -> None:
        self.recorded: list[tuple[DraftRef, RequestOutcome, str]] = []

    def record_outcomes(self, outcomes: list[Any], *, at: datetime) -> list[Any]:
        self.recorded.extend(outcomes)
        return []


def _batch(
    tmp_path: Path, results: dict[str, str | Exception], store: _Store, requests: _Requests
) -> ExportBatch:
    return ExportBatch(
        service=cast(ExportService, _Service(tmp_path, results)),
        store=cast(ExportStore, store),
        requests=cast(ExportRequests, requests),
        log=logging.getLogger("test_export_batch"),
        clock=lambda: NOW,
    )


def _refs(*keys: str) -> dict[str, DraftRef]:
    return {key: DraftRef.from_partition_key(key) for key in keys}


def test_a_partial_failure_archives_what_went_out_and_reports_each_draft(tmp_path: Path) -> None:
    store, requests = _Store(), _Requests()
    down = ExportError(ErrorCode.CONNECTION, "refused", transient=True)
    results: dict[str, str | Exception] = {
        "acme:D-1": "e1",
        "acme:D-2": down,
        "acme:D-3": AlreadyInFlight("held by another run"),
    }
    refs = _refs(*results)
    result = _batch(tmp_path, results, store, requests).export_batch(refs, run_id="run")
    assert list(result.outcomes) == ["acme:D-1"]
    archived = result.outcomes["acme:D-1"]
    assert store.put == ["acme/D-1/e1.json"] == [archived.archive_key]
    assert archived.spool_file is None and not (tmp_path / "e1.json").exists()
    assert set(result.failures) == {"acme:D-2", "acme:D-3"}
    # A draft another live run holds is that run's to report.
    assert requests.recorded == [
        (refs["acme:D-1"], RequestOutcome.SENT, "sent"),
        (refs["acme:D-2"], RequestOutcome.TRANSIENT, str(down)),
    ]
    assert result.transient
    message = result.failure_message()
    assert message.startswith("2 export(s) failed, 1 succeeded:\n")
    assert "acme:D-2: CONNECTION (transient): " in message
    assert "acme:D-3: AlreadyInFlight (permanent): " in message
    assert result.archive_failure is None


def test_an_archive_failure_stops_archiving_and_keeps_the_spool_files(tmp_path: Path) -> None:
    store, requests = _Store(conflicts=frozenset({"e1"})), _Requests()
    results: dict[str, str | Exception] = {"acme:D-1": "e1", "acme:D-2": "e2"}
    result = _batch(tmp_path, results, store, requests).export_batch(_refs(*results))
    assert not result.failures and not result.transient
    assert result.archive_failure is not None
    key, error = result.archive_failure
    assert key == "acme:D-1" and isinstance(error, ArchiveConflict)
    assert store.put == []
    assert (tmp_path / "e1.json").exists() and (tmp_path / "e2.json").exists()
    assert [r[1] for r in requests.recorded] == [RequestOutcome.SENT, RequestOutcome.SENT]
    assert result.summary() == "2 drafts: 2 sent"


class _Known:
    """Known partitions at the given positions."""

    def __init__(self, positions: dict[str, int]) -> None:
        self.positions = positions

    def __contains__(self, key: object) -> bool:
        return key in self.positions

    def position(self, key: str) -> int:
        return self.positions[key]

    def adjacent(self, first: str, second: str) -> bool:
        return self.positions[second] == self.positions[first] + 1


@pytest.mark.parametrize("reason", [RequestReason.NEW, RequestReason.REDRIVE])
def test_runs_are_one_per_host_for_new_keys_and_cut_at_gaps_for_known_ones(
    reason: RequestReason,
) -> None:
    def planned(key: str, host: str, why: RequestReason = reason) -> PlannedRequest:
        return PlannedRequest(DraftRef.from_partition_key(key), host, why, None, NOW)

    plan = RequestPlan(
        planned=[
            planned("acme:N-1", "sftp-a"),
            planned("acme:N-2", "sftp-a"),
            planned("acme:K-1", "sftp-a", RequestReason.REDRIVE),
            planned("acme:K-2", "sftp-a", RequestReason.REDRIVE),
            planned("acme:K-4", "sftp-a", RequestReason.REDRIVE),
            planned("globex:N-3", "local"),
        ]
    )
    known = _Known({"acme:K-1": 1, "acme:K-2": 2, "acme:K-4": 4})
    runs, new_keys = plan_runs(plan, known, NOW)
    suffix = "@20260102T030405.000000Z"
    fresh_suffix = "" if reason is RequestReason.NEW else suffix
    assert [(r.host, r.keys, r.run_key_suffix) for r in runs] == [
        ("sftp-a", ["acme:N-1", "acme:N-2"], fresh_suffix),
        ("sftp-a", ["acme:K-1", "acme:K-2"], suffix),
        ("sftp-a", ["acme:K-4"], suffix),
        ("local", ["globex:N-3"], fresh_suffix),
    ]
    assert new_keys == ["acme:N-1", "acme:N-2", "globex:N-3"]
