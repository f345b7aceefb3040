"""The ack loop in Dagster: ``erp_ack_sensor``, ``process_acks_job`` and the ``erp_ack`` check.

Wiring only: the pass itself is :class:`~orderflow_exports.application.ack_processing.AckProcessor`.
Each applied (or replayed) ack and each ack timeout becomes an ``AssetObservation`` and an
``erp_ack`` ``AssetCheckEvaluation`` on the export's ``export_json`` partition, so the UI shows
per draft whether the ERP took the order.

The sensor stays inside the daemon's 60 s evaluation timeout: files per org are bounded, each
org's pass runs in its own thread under ``org_time_budget_seconds`` (a hanging server is
abandoned and its connection closed), no new work starts after ``sensor_time_budget_seconds``
and no org is waited for after ``sensor_deadline_seconds``. Orgs whose last pass timed out go
last, and the next tick starts after the last org reached, so a hanging org cannot starve the
others. A tick that still fails or times out loses nothing but its events: the next tick finds
rows already changed (replays, which are reported again) and files already moved.

The sensor's cursor is a small JSON document: where the org rotation resumes, and per org the
bounded memory of its ack folder (entries already reported as skipped, sizes and times of acks
not settled yet, the last problem reported).
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dropzones import DropzoneSessions
from orderflow_exports.application.ack_processing import (
    AckOutcome,
    AckPassMemory,
    AckPassSummary,
    AckProcessor,
    AckSettings,
    AckTimeout,
)
from orderflow_exports.defs.partitions import approved_drafts_partitions
from orderflow_exports.defs.resources import (
    DatabaseResource,
    DropzoneResource,
    local_folder_resolver,
)
from orderflow_exports.domain.acks import (
    ACK_TIMEOUT,
    DEFAULT_MAX_ACK_BYTES,
    DEFAULT_SETTLE_SECONDS,
)
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus

EXPORT_JSON = dg.AssetKey("export_json")
ERP_ACK_CHECK = "erp_ack"
ACK_PROCESSING_RESOURCE_KEY = "ack_processing"

AckEvent = dg.AssetObservation | dg.AssetCheckEvaluation


class AckProcessingResource(dg.ConfigurableResource):
    """Bounds of one ack pass (sensor tick or ``process_acks_job`` run).

    The ack deadline itself is per org: ``erp_connector_config.ack_deadline_seconds``.
    """

    max_files_per_org: int = Field(
        default=100,
        ge=1,
        description="Ack files handled per org and pass; the rest waits for the next pass.",
    )
    max_ack_bytes: int = Field(
        default=DEFAULT_MAX_ACK_BYTES,
        ge=1,
        description="Larger ack files are moved to error/ unread.",
    )
    max_timeouts_per_org: int = Field(
        default=500, ge=1, description="SENT exports expired (ACK_TIMEOUT) per org and pass."
    )
    sensor_time_budget_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A sensor tick starts no new file or org after this long; the daemon "
        "kills an evaluation at 60 s (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS).",
    )
    sensor_deadline_seconds: float = Field(
        default=50.0,
        gt=0,
        lt=60,
        description="A sensor tick waits for no org's pass beyond this (hard end, under the "
        "daemon's 60 s limit); an org still running then is abandoned and reported.",
    )
    org_time_budget_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Longest one org's pass may take in a sensor tick; after it the org's "
        "connection is closed and the org is reported as timed out (TIMEOUT).",
    )
    job_org_time_budget_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest one org's pass may take in process_acks_job.",
    )
    settle_seconds: float = Field(
        default=DEFAULT_SETTLE_SECONDS,
        ge=0,
        description="An ack file that does not parse is moved to error/ only when its "
        "modification time is this old, or it was unchanged since the previous tick (it may "
        "still be being written); 0 judges at once. A valid ack is applied at once.",
    )

    def settings(self, *, time_budget_seconds: float | None, sensor: bool = False) -> AckSettings:
        return AckSettings(
            max_files_per_org=self.max_files_per_org,
            max_bytes=self.max_ack_bytes,
            max_timeouts_per_org=self.max_timeouts_per_org,
            time_budget_seconds=time_budget_seconds,
            org_time_budget_seconds=(
                self.org_time_budget_seconds if sensor else self.job_org_time_budget_seconds
            ),
            pass_deadline_seconds=self.sensor_deadline_seconds if sensor else None,
            settle_seconds=self.settle_seconds,
        )


# --- events ------------------------------------------------------------------------------------


def _clean(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is not None}


# What the draft's partition says about its latest export. Waiting is not a failure; the two
# states that need a person carry the next step.
ACK_STATE_WAITING = "WAITING_FOR_ACK"
ACK_STATE_ACKED = "ACKED"
ACK_STATE_NEEDS_ACTION = "NEEDS_ACTION"
NEXT_STEP = (
    "re-send: Materialize this partition of export_json (no force needed for a FAILED latest "
    "export); for ACK_TIMEOUT first look for the export id in the ERP's inbox"
)


def _ack_state(status: ExportStatus | None) -> str:
    if status is ExportStatus.ACKED:
        return ACK_STATE_ACKED
    if status is ExportStatus.FAILED:
        return ACK_STATE_NEEDS_ACTION
    return ACK_STATE_WAITING


def _state_metadata(status: ExportStatus | None) -> dict[str, Any]:
    state = _ack_state(status)
    return {"ack_state": state, "next_step": NEXT_STEP if state == ACK_STATE_NEEDS_ACTION else None}


def _outcome_metadata(outcome: AckOutcome) -> dict[str, Any]:
    return _clean(
        {
            **(_state_metadata(outcome.status) if outcome.kind != "rejected" else {}),
            "ack_outcome": outcome.kind,
            "export_id": outcome.export_id,
            "status": str(outcome.status) if outcome.status else None,
            "erp_order_number": outcome.erp_order_number,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message,
            "ack_file": outcome.file_name,
            "moved_to": outcome.moved_to,
            "erp_received_at": outcome.received_at.isoformat() if outcome.received_at else None,
            "reject_reason": outcome.reason if outcome.kind == "rejected" else None,
        }
    )


def _outcome_events(outcome: AckOutcome) -> list[AckEvent]:
    partition = outcome.partition_key
    if partition is None:
        if outcome.kind != "rejected":
            return []
        # Malformed, unknown or another org's export: no partition of this org to report on, so
        # the asset itself carries it, where the UI and `instance.fetch_observations` show it.
        return [
            dg.AssetObservation(
                asset_key=EXPORT_JSON,
                description=f"org {outcome.org_id}: ack {outcome.file_name} moved to error/: "
                f"{outcome.reason}",
                metadata=_clean(
                    {
                        "org_id": outcome.org_id,
                        "ack_outcome": "rejected",
                        "reject_code": outcome.reject_code,
                        "reject_reason": outcome.reason,
                        "ack_file": outcome.file_name,
                        "moved_to": outcome.moved_to,
                    }
                ),
            )
        ]
    metadata = _outcome_metadata(outcome)
    if outcome.kind == "rejected":
        # A contradicting ack changes nothing; the observation makes it visible on the draft.
        description = f"ERP ack {outcome.file_name} not applied: {outcome.reason}"
        return [
            dg.AssetObservation(
                asset_key=EXPORT_JSON,
                description=description,
                metadata=metadata,
                partition=partition,
            )
        ]
    if outcome.kind not in ("applied", "replayed"):
        return []
    acked = outcome.status is ExportStatus.ACKED
    description = (
        f"ERP acknowledged export {outcome.export_id} as {outcome.erp_order_number or '-'}"
        if acked
        else f"NEEDS ACTION: ERP rejected export {outcome.export_id}: {outcome.error_message or ''}"
    )
    return [
        dg.AssetObservation(
            asset_key=EXPORT_JSON, description=description, metadata=metadata, partition=partition
        ),
        dg.AssetCheckEvaluation(
            asset_key=EXPORT_JSON,
            check_name=ERP_ACK_CHECK,
            passed=acked,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.ERROR,
            description=description,
            partition=partition,
        ),
    ]


def _timeout_events(timeout: AckTimeout) -> list[AckEvent]:
    metadata = _clean(
        {
            **_state_metadata(ExportStatus.FAILED),
            "ack_outcome": "timeout",
            "export_id": timeout.export_id,
            "status": str(ExportStatus.FAILED),
            "error_code": ACK_TIMEOUT,
            "error_message": timeout.message,
            "sent_at": timeout.sent_at.isoformat() if timeout.sent_at else None,
        }
    )
    description = f"NEEDS ACTION: export {timeout.export_id}: {timeout.message}"
    return [
        dg.AssetObservation(
            asset_key=EXPORT_JSON,
            description=description,
            metadata=metadata,
            partition=timeout.partition_key,
        ),
        dg.AssetCheckEvaluation(
            asset_key=EXPORT_JSON,
            check_name=ERP_ACK_CHECK,
            passed=False,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.ERROR,
            description=description,
            partition=timeout.partition_key,
        ),
    ]


def _problem_digest(summary: AckPassSummary) -> str | None:
    if summary.failure is None:
        return None
    return hashlib.sha256(f"{summary.failure_code}|{summary.failure}".encode()).hexdigest()[:12]


def _org_problem_events(summary: AckPassSummary, previous: str | None) -> list[AckEvent]:
    """An observation when an org's ack folder stops (or starts again) being processed.

    Once per change, not on every tick: the tick's log carries the error each time.
    """
    current = _problem_digest(summary)
    if summary.not_reached or current == previous:
        return []
    if current is None:
        description = f"org {summary.org_id}: ack folder readable again"
        metadata: dict[str, Any] = {"org_id": summary.org_id, "ack_outcome": "folder_ok"}
    else:
        description = f"org {summary.org_id}: ack folder not processed: {summary.failure}"
        metadata = {
            "org_id": summary.org_id,
            "ack_outcome": "folder_error",
            "error_code": summary.failure_code or "",
            "error_message": summary.failure or "",
            "ack_deadline_applied": False,
        }
    return [dg.AssetObservation(asset_key=EXPORT_JSON, description=description, metadata=metadata)]


def ack_events(
    summaries: Iterable[AckPassSummary], memory: AckPassMemory | None = None
) -> list[AckEvent]:
    """The asset events of a pass, in the order things happened.

    With ``memory`` (the previous pass's), org-level problems are reported when they change.
    """
    events: list[AckEvent] = []
    for summary in summaries:
        if memory is not None:
            events.extend(_org_problem_events(summary, memory.for_org(summary.org_id).problem))
        for outcome in summary.outcomes:
            events.extend(_outcome_events(outcome))
        for timeout in summary.timeouts:
            events.extend(_timeout_events(timeout))
    return events


def once_per_partition(instance: dg.DagsterInstance, events: list[AckEvent]) -> list[AckEvent]:
    """Drop check evaluations Dagster could not store; observations are always kept.

    Dagster 1.13 stores a run-less partitioned check evaluation under run_id '' in
    ``asset_check_executions``, whose unique index (asset_key, check_name, run_id, partition)
    lets each partition have only one: a second one makes ``report_runless_asset_event`` raise
    in the daemon and fails the tick. So a partition gets its erp_ack evaluation from the first
    ack or timeout reported by the sensor (one per partition per tick); later changes (a replay,
    a second attempt's ack) show as observations, and ``process_acks_job`` (run-based
    evaluations, no such limit) or running the check reports them on the check too.
    """
    latest: dict[str, int] = {}
    for index, event in enumerate(events):
        if isinstance(event, dg.AssetCheckEvaluation) and event.partition is not None:
            latest[event.partition] = index  # the newest state wins within one tick
    kept: list[AckEvent] = []
    for index, event in enumerate(events):
        if (
            isinstance(event, dg.AssetCheckEvaluation)
            and event.partition is not None
            and (
                latest[event.partition] != index
                or _has_runless_evaluation(instance, event.partition)
            )
        ):
            continue
        kept.append(event)
    return kept


def _has_runless_evaluation(instance: dg.DagsterInstance, partition: str) -> bool:
    # PartitionKeyFilter is internal; the pinned Dagster version is what this is written for.
    from dagster._core.event_api import PartitionKeyFilter

    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(EXPORT_JSON, ERP_ACK_CHECK),
        limit=1000,
        partition_filter=PartitionKeyFilter(key=partition),
    )
    return any(not record.run_id for record in history)


def _rotate(
    configs: Sequence[ConnectorConfig], after: str | None, last: Iterable[str] = ()
) -> list[ConnectorConfig]:
    """Start after the org a previous tick ended with, so a slow org cannot starve later ones.

    Orgs in ``last`` (their previous pass timed out) go to the end, so healthy orgs are served
    before the budget goes to servers that did not answer last time.
    """
    ordered = sorted(configs, key=lambda c: c.org_id)
    if after:
        split = next((i for i, c in enumerate(ordered) if c.org_id > after), 0)
        ordered = ordered[split:] + ordered[:split]
    slow = set(last)
    return [c for c in ordered if c.org_id not in slow] + [c for c in ordered if c.org_id in slow]


class AckCursor:
    """The sensor's cursor: where the rotation resumes, and the pass memory (bounded JSON)."""

    def __init__(
        self,
        after: str | None = None,
        memory: AckPassMemory | None = None,
        slow: Sequence[str] = (),
    ) -> None:
        self.after = after
        self.memory = memory or AckPassMemory()
        self.slow = list(slow)

    @classmethod
    def parse(cls, raw: str | None) -> "AckCursor":
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(after=raw)  # the plain org id earlier versions stored
        if not isinstance(data, dict):
            return cls()
        after = data.get("after") if isinstance(data.get("after"), str) else None
        slow = [o for o in data.get("slow", []) if isinstance(o, str)]
        return cls(after, AckPassMemory.from_json(data.get("orgs")), slow)

    def dump(self, org_ids: Iterable[str]) -> str:
        return json.dumps(
            {"after": self.after, "slow": self.slow, "orgs": self.memory.to_json(org_ids)},
            separators=(",", ":"),
            sort_keys=True,
        )


def run_ack_pass(
    database: DatabaseResource,
    dropzone: DropzoneResource,
    ack_processing: AckProcessingResource,
    log: Any,
    *,
    time_budget_seconds: float | None,
    start_after: str | None = None,
    memory: AckPassMemory | None = None,
    sensor: bool = False,
    last: Sequence[str] = (),
) -> list[AckPassSummary]:
    """One pass over every enabled org, shared by the sensor and the job."""
    # Every row, enabled or not: a disabled org's folders are compared too (only enabled orgs
    # are processed).
    configs = _rotate(database.connector_configs().list(), start_after, last)
    processor = AckProcessor(
        database.ledger(),
        ack_processing.settings(time_budget_seconds=time_budget_seconds, sensor=sensor),
        log=log,
        local_folders=local_folder_resolver(None, dropzone),
    )

    # One connector per org: an org abandoned at its deadline keeps its own connection, which
    # its thread closes when it ends; no SFTP connection outlives its org's pass (a sensor's
    # code server lives long).
    def connector() -> DropzoneSessions:
        return DropzoneSessions(sftp_settings_factory=dropzone.sftp_settings)

    summaries = processor.process_all(configs, connector_factory=connector, memory=memory)
    for summary in summaries:
        if summary.did_anything or summary.not_reached:
            report = log.error if summary.failure or summary.stuck else log.info
            report(summary.describe())
    return summaries


def _next_memory(summaries: Sequence[AckPassSummary], previous: AckPassMemory) -> AckPassMemory:
    memory = AckPassMemory(dict(previous.orgs))
    for summary in summaries:
        if summary.memory is not None:
            summary.memory.problem = _problem_digest(summary)
            memory.orgs[summary.org_id] = summary.memory
    return memory


# --- the sensor --------------------------------------------------------------------------------


@dg.sensor(
    name="erp_ack_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 60 s: applies the ERP's ack files of every enabled org (ACKED / FAILED), "
    "moves them to processed/ or error/, and fails SENT exports past their org's ack deadline "
    "(ACK_TIMEOUT). Reports each change on the export_json partition.",
)
def erp_ack_sensor(
    context: dg.SensorEvaluationContext,
    database: DatabaseResource,
    dropzone: DropzoneResource,
    ack_processing: AckProcessingResource,
) -> dg.SensorResult | dg.SkipReason:
    cursor = AckCursor.parse(context.cursor)
    summaries = run_ack_pass(
        database,
        dropzone,
        ack_processing,
        context.log,
        time_budget_seconds=ack_processing.sensor_time_budget_seconds,
        start_after=cursor.after,
        memory=cursor.memory,
        sensor=True,
        last=cursor.slow,
    )
    events = once_per_partition(context.instance, ack_events(summaries, cursor.memory))
    reached = [s for s in summaries if not s.not_reached]
    # Next tick starts after the last org this one reached (rotation only matters when the
    # budget ran out; otherwise every org was visited anyway).
    next_cursor = AckCursor(
        after=reached[-1].org_id if reached and len(reached) < len(summaries) else None,
        memory=_next_memory(summaries, cursor.memory),
        slow=[s.org_id for s in summaries if s.timed_out],
    )
    context.update_cursor(next_cursor.dump(s.org_id for s in summaries))
    problems = [
        s.describe() for s in summaries if s.failure or s.stuck or s.not_reached or s.rejected
    ]
    if not events:
        if not summaries:
            return dg.SkipReason("no enabled connector configs")
        if problems:
            return dg.SkipReason("no ack applied; " + "; ".join(problems))
        return dg.SkipReason(
            f"no acks to apply and no exports past their deadline in {len(summaries)} org(s)"
        )
    for problem in problems:
        context.log.error(problem)
    # The tick list shows a tick's skip text, not its asset events: say what this tick did there
    # (it requests no runs, so without it a working tick reads like an idle one).
    return dg.SensorResult(asset_events=events, skip_reason=tick_text(summaries, problems))


def tick_text(summaries: Sequence[AckPassSummary], problems: Sequence[str] = ()) -> str:
    """One line for the tick list: what a pass applied, skipped and why, per kind."""
    applied = [o for s in summaries for o in s.applied]
    acked = sum(1 for o in applied if o.status is ExportStatus.ACKED)
    parts = [
        f"applied {len(applied)} ack(s) ({acked} ACKED, {len(applied) - acked} FAILED by the ERP)",
        f"{sum(len(s.replayed) for s in summaries)} replayed (no change)",
        f"{sum(len(s.rejected) for s in summaries)} moved to error/",
        f"{sum(len(s.timeouts) for s in summaries)} ACK_TIMEOUT",
        f"{sum(s.deferred for s in summaries)} deferred to the next tick",
        f"in {len(summaries)} org(s)",
    ]
    text = ", ".join(parts)
    if problems:
        text += "; problems: " + "; ".join(problems)
    return text[:2000]


# --- the job -----------------------------------------------------------------------------------


@dg.op(
    description="One ack pass over every enabled org: apply acks, move files, expire SENT "
    "exports past their ack deadline. Fails when an org's dropzone could not be read."
)
def process_acks(
    context: dg.OpExecutionContext,
    database: DatabaseResource,
    dropzone: DropzoneResource,
    ack_processing: AckProcessingResource,
) -> None:
    summaries = run_ack_pass(
        database, dropzone, ack_processing, context.log, time_budget_seconds=None
    )
    for event in ack_events(summaries):
        context.log_event(event)  # type: ignore[arg-type]  # check evaluations are accepted too
    applied = sum(len(s.applied) for s in summaries)
    context.add_output_metadata(
        {
            "orgs": len(summaries),
            "applied": applied,
            "replayed": sum(len(s.replayed) for s in summaries),
            "rejected": sum(len(s.rejected) for s in summaries),
            "timed_out": sum(len(s.timeouts) for s in summaries),
            "deferred": sum(s.deferred for s in summaries),
        }
    )
    problems = [s.describe() for s in summaries if s.failure or s.stuck]
    if problems:
        # CI and operators run this job to be sure acks were read: say so when they were not.
        raise dg.Failure(
            description="ack pass incomplete: " + "; ".join(problems), allow_retries=True
        )


@dg.job(
    name="process_acks_job",
    description="One ack pass over every enabled org (what erp_ack_sensor does every 60 s): "
    "dagster job execute -m orderflow_exports -j process_acks_job",
    tags={"orderflow/kind": "acks"},
)
def process_acks_job() -> None:
    process_acks()


# --- the check -----------------------------------------------------------------------------------


def _check_metadata(record: ExportRecord | None) -> dict[str, Any]:
    if record is None:
        return {"status": "NOT_EXPORTED"}
    return _clean(
        {
            **_state_metadata(record.status),
            "export_id": record.id,
            "status": str(record.status),
            "erp_order_number": record.erp_order_number,
            "error_code": record.error_code,
            "error_message": record.error_message,
            "sent_at": record.sent_at.isoformat() if record.sent_at else None,
            "acked_at": record.acked_at.isoformat() if record.acked_at else None,
        }
    )


@dg.asset_check(
    asset=EXPORT_JSON,
    name=ERP_ACK_CHECK,
    partitions_def=approved_drafts_partitions,
    blocking=False,
    description="Did the ERP refuse or never answer the draft's latest export? Failed (error): "
    "the latest export is FAILED (ERP_REJECTED, ACK_TIMEOUT, a transport error): it needs a "
    "re-send. Passed: ACKED, or still waiting for the ack within the org's deadline (waiting is "
    "not a failure; the metadata says WAITING_FOR_ACK). Reported by erp_ack_sensor on every ack "
    "and timeout; running the check reads the current erp_export row.",
)
def erp_ack(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    ledger = database.ledger()
    rows: dict[str, ExportRecord | None] = {}
    for key in context.partition_keys:
        try:
            rows[key] = ledger.latest(DraftRef.from_partition_key(key))
        except OrderflowError:
            rows[key] = None
    failed = [k for k, r in rows.items() if r is not None and r.status is ExportStatus.FAILED]
    missing = [k for k, r in rows.items() if r is None]
    waiting = [
        k for k, r in rows.items() if r is not None and _ack_state(r.status) == ACK_STATE_WAITING
    ]
    passed = not failed and not missing
    severity = dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN
    if len(rows) == 1:
        [(key, record)] = rows.items()
        metadata = _check_metadata(record)
    else:
        # Counts only: per-draft states are on each partition's observations (linear storage).
        metadata = {
            "needs_action": len(failed),
            "waiting_for_ack": len(waiting),
            "acked": len(rows) - len(failed) - len(waiting) - len(missing),
            "not_exported": len(missing),
        }
    if failed:
        description = f"NEEDS ACTION: {len(failed)} export(s) FAILED: {', '.join(failed[:20])}"
    elif missing:
        description = f"{len(missing)} draft(s) not exported: {', '.join(missing[:20])}"
    elif waiting:
        description = f"{len(waiting)} export(s) waiting for the ERP's ack (not a failure)"
    else:
        description = "acknowledged by the ERP"
    return dg.AssetCheckResult(
        passed=passed, severity=severity, metadata=metadata, description=description
    )


# What the Definitions need from this module (see the report to the lead).
ack_sensors = [erp_ack_sensor]
ack_jobs = [process_acks_job]
ack_asset_checks = [erp_ack]
ack_resources: dict[str, Any] = {ACK_PROCESSING_RESOURCE_KEY: AckProcessingResource()}
