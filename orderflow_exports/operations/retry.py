"""Re-send drafts through the running Dagster deployment, from Python (the OrderFlow app).

    from orderflow_exports.operations.retry import retry_draft
    launch = retry_draft("acme", "D-1001", url="http://dagster:3000", wait=True)
    launch.run_id, launch.final.status if launch.final else None

The run is queued in the deployment (webserver GraphQL API), so the daemon's run retries, the
per-host concurrency limit and the UI's run history apply. A SENT or ACKED draft is refused
(:class:`RetryRefused`) unless ``force``; an ``ACK_TIMEOUT`` retry carries a warning in
``launch.plan.warning``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sqlalchemy import Engine

from orderflow_exports.adapters.dagster_deployment import GraphQLDeployment
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.application.retry import (
    DeploymentUnavailable,
    RetryLaunch,
    RetryRefused,
    failed_drafts,
    launch_retries,
    plan_retry,
    wait_for_outcome,
)
from orderflow_exports.domain.naming import DraftRef

__all__ = [
    "DEFAULT_DAGSTER_URL",
    "DeploymentUnavailable",
    "RetryLaunch",
    "RetryRefused",
    "dagster_url",
    "retry_draft",
    "retry_drafts",
    "retry_failed",
]

DAGSTER_URL_ENV = "ORDERFLOW_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"


def dagster_url(url: str | None = None) -> str:
    """``url``, else ``$ORDERFLOW_DAGSTER_URL``, else the local webserver's default address."""
    return url or os.environ.get(DAGSTER_URL_ENV) or DEFAULT_DAGSTER_URL


def _engine(engine: Engine | None) -> Engine:
    if engine is not None:
        return engine
    from orderflow_exports.defs.settings import resolve_database_url

    return make_engine(resolve_database_url(None))


def retry_drafts(
    refs: Sequence[DraftRef],
    *,
    url: str | None = None,
    force: bool = False,
    wait: bool = False,
    timeout: float = 900.0,
    engine: Engine | None = None,
) -> list[RetryLaunch]:
    """Queue one export run per draft; every draft is checked before anything is launched."""
    db = _engine(engine)
    ledger, configs = SqlExportLedger(db), SqlConnectorConfigs(db)
    plans = [plan_retry(ref, ledger=ledger, configs=configs, force=force) for ref in refs]
    deployment = GraphQLDeployment(dagster_url(url))
    launches = launch_retries(plans, deployment)
    if wait:
        for launch in launches:
            wait_for_outcome(launch, deployment, timeout=timeout)
    return launches


def retry_draft(
    org_id: str,
    draft_order_id: str,
    *,
    url: str | None = None,
    force: bool = False,
    wait: bool = False,
    timeout: float = 900.0,
    engine: Engine | None = None,
) -> RetryLaunch:
    """Re-send one draft (see :func:`retry_drafts`)."""
    [launch] = retry_drafts(
        [DraftRef(org_id, draft_order_id)],
        url=url,
        force=force,
        wait=wait,
        timeout=timeout,
        engine=engine,
    )
    return launch


def retry_failed(
    org_id: str | None,
    *,
    limit: int = 100,
    url: str | None = None,
    wait: bool = False,
    timeout: float = 900.0,
    engine: Engine | None = None,
) -> list[RetryLaunch]:
    """Re-send every draft (of ``org_id``) whose latest attempt is FAILED (no force needed)."""
    db = _engine(engine)
    refs = failed_drafts(SqlExportLedger(db), org_id=org_id, limit=limit)
    return retry_drafts(refs, url=url, wait=wait, timeout=timeout, engine=db)
