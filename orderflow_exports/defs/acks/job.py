"""``process_acks_job``: one ack pass on demand (CI, operators, the demo), as a Dagster run.

Run-based check evaluations have no one-per-partition limit, so every event of the pass is
logged; the run fails when an org's ack folder could not be processed.
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

import dagster as dg

from orderflow_exports.application.acks.report import incomplete_orgs, pass_totals
from orderflow_exports.defs.acks.events import ack_events
from orderflow_exports.defs.acks.resource import AckProcessingResource, run_ack_pass
from orderflow_exports.defs.resources import DatabaseResource, DropzoneResource


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
    context.add_output_metadata(pass_totals(summaries).as_metadata())
    problems = incomplete_orgs(summaries)
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
