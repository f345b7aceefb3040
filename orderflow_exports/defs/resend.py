"""``resend_drafts_needing_action_job``: the UI's one path to re-send every draft needing action.

Drafts the ERP rejected (``ERP_REJECTED``) or never answered (``ACK_TIMEOUT``) have a successful
materialization, so Dagster shows them Materialized and a "Failed and missing" backfill skips
them. Launching this job from the UI (Jobs → resend_drafts_needing_action_job → Launchpad)
queues one export run per such draft through the deployment, exactly as
``orderflow-exports exports retry`` does: same checks, same per-host tag, run retries apply.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dagster_deployment import GraphQLDeployment
from orderflow_exports.application.retry import (
    NEEDS_ACTION_CODES,
    launch_retries,
    select_resends,
)
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.operations.retry import DAGSTER_URL_ENV, DEFAULT_DAGSTER_URL, dagster_url


class ResendConfig(dg.Config):
    """What to re-send; the defaults re-send every draft the ERP rejected or never answered."""

    org_id: str | None = Field(default=None, description="Only this org's drafts (unset: all).")
    error_codes: list[str] = Field(
        default_factory=lambda: [str(code) for code in NEEDS_ACTION_CODES],
        description="Re-send drafts whose latest attempt FAILED with one of these codes.",
    )
    limit: int = Field(default=100, description="At most this many drafts per launch.")
    dagster_url: str | None = Field(
        default=None,
        description=f"The webserver that queues the export runs. Unset: env {DAGSTER_URL_ENV}, "
        f"else {DEFAULT_DAGSTER_URL}.",
    )


@dg.op(
    description="Queue one export run per draft whose latest attempt FAILED with one of the "
    "configured codes (default ERP_REJECTED, ACK_TIMEOUT); SENT, ACKED and PENDING drafts are "
    "never touched."
)
def resend_drafts_needing_action(
    context: dg.OpExecutionContext, config: ResendConfig, database: DatabaseResource
) -> list[str]:
    selection = select_resends(
        database.ledger(),
        database.connector_configs(),
        error_codes=config.error_codes,
        org_id=config.org_id,
        limit=config.limit,
        requested_by="resend_drafts_needing_action_job",
    )
    refused = selection.refused
    for key, reason in refused.items():
        context.log.warning(f"{key}: not re-sent: {reason}")
    for plan in selection.plans:
        if plan.warning:
            context.log.warning(plan.warning)
    launches = launch_retries(selection.plans, GraphQLDeployment(dagster_url(config.dagster_url)))
    for launch in launches:
        context.log.info(f"{launch.plan.ref}: queued run {launch.run_id}")
    metadata: dict[str, Any] = {
        "queued": len(launches),
        "refused": len(refused),
        "runs": dg.MetadataValue.json({x.plan.ref.partition_key: x.run_id for x in launches}),
    }
    if refused:
        metadata["refusals"] = dg.MetadataValue.json(refused)
    context.add_output_metadata(metadata)
    if not selection.plans and not refused:
        context.log.info("no draft needs action")
    return [launch.run_id for launch in launches]


@dg.job(
    name="resend_drafts_needing_action_job",
    description="Re-send every draft whose latest export the ERP rejected (ERP_REJECTED) or "
    "never answered (ACK_TIMEOUT): one queued export run per draft. Check the ERP first for "
    "ACK_TIMEOUT drafts: it may hold the order already.",
    tags={"orderflow/kind": "resend"},
)
def resend_drafts_needing_action_job() -> None:
    resend_drafts_needing_action()


resend_jobs = [resend_drafts_needing_action_job]
