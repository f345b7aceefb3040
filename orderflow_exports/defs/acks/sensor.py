"""``erp_ack_sensor``: an ack pass every 60 s, inside the daemon's evaluation timeout.

Files per org are bounded, each org's pass runs in its own thread under
``org_time_budget_seconds`` (a hanging server is abandoned and its connection closed), no new
work starts after ``sensor_time_budget_seconds`` and no org is waited for after
``sensor_deadline_seconds``. Orgs whose last pass timed out go last, and the next tick starts
after the last org reached, so a hanging org cannot starve the others. A tick that still fails
or times out loses nothing but its events: the next tick finds rows already changed (replays,
which are reported again) and files already moved.

The sensor's cursor is a small JSON document: where the org rotation resumes, and per org the
bounded memory of its ack folder (entries already reported as skipped, sizes and times of acks
not settled yet, the last problem reported).
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

import json
from collections.abc import Iterable, Sequence

import dagster as dg

from orderflow_exports.adapters.dagster_instance import once_per_partition
from orderflow_exports.application.acks.memory import AckPassMemory, next_memory
from orderflow_exports.application.acks.processor import resume_after, timed_out_orgs
from orderflow_exports.application.acks.report import idle_text, tick_problems, tick_text
from orderflow_exports.defs.acks.events import ack_events
from orderflow_exports.defs.acks.resource import AckProcessingResource, run_ack_pass
from orderflow_exports.defs.resources import DatabaseResource, DropzoneResource


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
    next_cursor = AckCursor(
        after=resume_after(summaries),
        memory=next_memory(summaries, cursor.memory),
        slow=timed_out_orgs(summaries),
    )
    context.update_cursor(next_cursor.dump(s.org_id for s in summaries))
    problems = tick_problems(summaries)
    if not events:
        return dg.SkipReason(idle_text(summaries, problems))
    for problem in problems:
        context.log.error(problem)
    # The tick list shows a tick's skip text, not its asset events: say what this tick did there
    # (it requests no runs, so without it a working tick reads like an idle one).
    return dg.SensorResult(asset_events=events, skip_reason=tick_text(summaries, problems))
