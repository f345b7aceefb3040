"""``orderflow-exports exports``: list, show, retry, backlog and attention over ``erp_export``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from orderflow_exports.cli.common import (
    MAX_LIST_LIMIT,
    EnvironmentProblem,
    UsageError,
    check_limit,
    emit,
    fail,
    open_engine,
    when,
)
from orderflow_exports.cli.export_views import (
    FULL_ERROR_CHARS,
    format_exports,
    record_json,
    resend_command,
    retry_hint,
)
from orderflow_exports.domain.naming import validate_id
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus


def register(groups: Any) -> None:
    """Add the ``exports`` group."""
    exports = groups.add_parser("exports", help="export attempts (erp_export)")
    esub = exports.add_subparsers(dest="cmd", required=True)
    elist = esub.add_parser("list", help="list export attempts, newest first")
    elist.add_argument("--org")
    elist.add_argument("--status", choices=[s.value for s in ExportStatus])
    elist.add_argument("--limit", type=int, default=100)
    elist.add_argument("--json", action="store_true", help="the rows as a JSON array")
    elist.add_argument("--full-errors", action="store_true", help="do not cut error messages")
    elist.set_defaults(func=cmd_exports_list)

    eshow = esub.add_parser("show", help="every attempt of one draft in full (ORG:DRAFT)")
    eshow.add_argument("key", metavar="ORG:DRAFT")
    eshow.add_argument("--json", action="store_true")
    eshow.add_argument("--url", help="Dagster webserver base URL, for the UI link")
    eshow.set_defaults(func=cmd_exports_show)

    eretry = esub.add_parser(
        "retry",
        help="re-send through the running Dagster deployment (run retries and limits apply)",
    )
    eretry.add_argument("--org")
    eretry.add_argument("--draft")
    eretry.add_argument("--status", choices=["FAILED"], help="every draft whose latest is FAILED")
    eretry.add_argument("--force", action="store_true", help="also over a SENT/ACKED export")
    eretry.add_argument("--wait", action="store_true", help="wait for the runs and report")
    eretry.add_argument("--wait-timeout", type=float, default=900.0, metavar="SECONDS")
    eretry.add_argument("--limit", type=int, default=100, help="drafts per batch")
    eretry.add_argument(
        "--url", help="Dagster webserver URL (default $ORDERFLOW_DAGSTER_URL or 127.0.0.1:3000)"
    )
    eretry.set_defaults(func=cmd_exports_retry)

    backlog = esub.add_parser("backlog", help="approved drafts not exported (yet), with the reason")
    backlog.add_argument("--org")
    backlog.add_argument("--limit", type=int, default=1000)
    backlog.add_argument("--json", action="store_true")
    backlog.set_defaults(func=cmd_exports_backlog)

    attention = esub.add_parser(
        "attention", help="drafts that need a person (stopped re-drives, ACK_TIMEOUT, rejected)"
    )
    attention.add_argument("--org")
    attention.add_argument("--limit", type=int, default=100, help="per kind of problem")
    attention.set_defaults(func=cmd_exports_attention)


def cmd_exports_list(args: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.naming import DraftRef

    check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    status = ExportStatus(args.status) if args.status else None
    engine = open_engine()
    ledger = SqlExportLedger(engine)
    records = ledger.list(org_id=args.org, status=status, limit=args.limit)
    # A FAILED row listed alone (a status filter, a limit) may have a later attempt: ask.
    latest_attempts = {}
    for key in {(r.org_id, r.draft_order_id) for r in records if r.status is ExportStatus.FAILED}:
        latest = ledger.latest(DraftRef(*key))
        if latest is not None:
            latest_attempts[key] = latest.attempt
    if args.json:
        import json

        emit(json.dumps([record_json(r) for r in records], indent=2))
        return 0
    emit(format_exports(records, _ack_paths(engine), latest_attempts, full_errors=args.full_errors))
    return 0


def _ack_paths(engine: Any) -> dict[str, str]:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    return {c.org_id: c.ack_path for c in SqlConnectorConfigs(engine).list()}


def cmd_exports_attention(args: argparse.Namespace) -> int:
    """Drafts a person must look at: automatic requests stopped, or the ERP timed out/refused."""
    from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT, ERP_REJECTED
    from orderflow_exports.domain.ack_files import excerpt
    from orderflow_exports.domain.naming import DraftRef

    check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    engine = open_engine()
    ledger = SqlExportLedger(engine)
    ack_paths = _ack_paths(engine)
    stopped = SqlExportRequests(engine).needing_person(org_id=args.org, limit=args.limit)
    failed = ledger.latest_failed((ACK_TIMEOUT, ERP_REJECTED), org_id=args.org, limit=args.limit)
    lines: dict[tuple[str, str], str] = {}
    for record in failed:
        lines[(record.org_id, record.draft_order_id)] = (
            f"{record.org_id}:{record.draft_order_id} attempt {record.attempt} FAILED "
            f"{record.error_code} at {when(record.updated_at)} — "
            f"{retry_hint(record, ack_paths.get(record.org_id))}"
        )
    for request in stopped:
        key = (request.org_id, request.draft_order_id)
        why = (
            f"automatic requests stopped at {when(request.needs_person_since)} after "
            f"{request.redrive_count} re-drives ({request.last_outcome or 'no outcome'}: "
            f"{excerpt(request.last_reason or 'no reason recorded', 300)})"
        )
        if key in lines:
            lines[key] += f"; {why}"
            continue
        latest = ledger.latest(DraftRef(*key))
        # A new attempt over a SENT or ACKED export needs force; over anything else it does not.
        force = latest is not None and latest.status in (ExportStatus.SENT, ExportStatus.ACKED)
        status = (
            f"latest export attempt {latest.attempt} {latest.status}" if latest else "no export"
        )
        lines[key] = (
            f"{request.org_id}:{request.draft_order_id} {why}; {status} — fix the cause (its "
            "connector or the draft; a change to the draft also requests it again), then "
            f"re-send: {resend_command(*key, force=force)}"
        )
    if not lines:
        emit("no drafts need a person")
        return 0
    for key in sorted(lines):
        emit(lines[key])
    return 0


def _parse_draft_key(value: str) -> Any:
    from orderflow_exports.domain.naming import DraftRef

    org, sep, draft = value.partition(":")
    if not sep:
        raise UsageError(f"{value!r} is not ORG:DRAFT (for example acme:D-1001)")
    return DraftRef(validate_id(org, "org"), validate_id(draft, "draft"))


def _ui_base(args: argparse.Namespace) -> str:
    from orderflow_exports.operations.retry import dagster_url

    return dagster_url(getattr(args, "url", None)).rstrip("/")


def cmd_exports_retry(args: argparse.Namespace) -> int:
    """Queue export runs in the running deployment for one draft or the FAILED ones of an org."""
    from orderflow_exports.adapters.dagster_deployment import GraphQLDeployment
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.application.retry import (
        DeploymentUnavailable,
        RetryRefused,
        failed_drafts,
        launch_retries,
        plan_retry,
        wait_for_outcome,
    )
    from orderflow_exports.domain.naming import DraftRef

    if args.draft is not None and args.status is not None:
        raise UsageError("give either --draft (one draft) or --status FAILED (a batch), not both")
    if args.draft is None and args.status is None:
        raise UsageError("give --org and --draft, or --status FAILED [--org ORG]")
    if args.draft is not None and args.org is None:
        raise UsageError("--draft needs --org")
    if args.org is not None:
        validate_id(args.org, "--org")
    check_limit(args.limit)
    if args.wait_timeout <= 0:
        raise UsageError(f"--wait-timeout {args.wait_timeout} is not a positive number of seconds")
    try:
        deployment = GraphQLDeployment(_ui_base(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    engine = open_engine()
    ledger, configs = SqlExportLedger(engine), SqlConnectorConfigs(engine)
    if args.draft is not None:
        refs = [DraftRef(args.org, validate_id(args.draft, "--draft"))]
    else:
        refs = failed_drafts(ledger, org_id=args.org, limit=args.limit)
        if not refs:
            emit("no drafts whose latest export is FAILED")
            return 0
    try:
        plans = [plan_retry(ref, ledger=ledger, configs=configs, force=args.force) for ref in refs]
    except RetryRefused as exc:
        raise UsageError(str(exc)) from None
    for plan in plans:
        if plan.warning:
            sys.stderr.write(f"orderflow-exports: warning: {plan.warning}\n")
    try:
        launches = launch_retries(plans, deployment)
        for launch in launches:
            added = " (partition added)" if launch.partition_added else ""
            emit(
                f"{launch.plan.ref}: run {launch.run_id} queued{added} "
                f"{deployment.run_url(launch.run_id)}"
            )
        if not args.wait:
            return 0
        failed = 0
        for launch in launches:
            final = wait_for_outcome(launch, deployment, timeout=args.wait_timeout)
            latest = ledger.latest(launch.plan.ref)
            row = (
                f"latest export attempt {latest.attempt} {latest.status}"
                + (f" {latest.error_code}" if latest.error_code else "")
                + f" file {latest.filename}"
                if latest
                else "no export row"
            )
            emit(f"{launch.plan.ref}: {final.status} (runs {' → '.join(launch.runs)}); {row}")
            failed += final.status != "SUCCESS"
    except DeploymentUnavailable as exc:
        raise EnvironmentProblem(str(exc)) from None
    except TimeoutError as exc:
        raise EnvironmentProblem(str(exc)) from None
    if failed:
        return fail(f"{failed} of {len(launches)} retried draft(s) did not succeed", 1)
    return 0


def cmd_exports_show(args: argparse.Namespace) -> int:
    """Every attempt of one draft in full, its request record and its page in the UI."""
    import json
    import urllib.parse

    from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.ack_files import excerpt

    ref = _parse_draft_key(args.key)
    engine = open_engine()
    rows = [
        r
        for r in SqlExportLedger(engine).list(org_id=ref.org_id, limit=MAX_LIST_LIMIT)
        if r.draft_order_id == ref.draft_order_id
    ]
    rows.sort(key=lambda r: r.attempt)
    request = SqlExportRequests(engine).get(ref)
    url = (
        f"{_ui_base(args)}/assets/export_json?view=partitions&partition="
        f"{urllib.parse.quote(ref.partition_key, safe='')}"
    )
    if args.json:
        from dataclasses import asdict

        shown_request = None
        if request is not None:
            shown_request = {
                k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in asdict(request).items()
            }
        emit(
            json.dumps(
                {
                    "draft": ref.partition_key,
                    "ui_url": url,
                    "attempts": [record_json(r) for r in rows],
                    "request": shown_request,
                },
                indent=2,
            )
        )
        return 0
    emit(f"{ref}  {url}")
    if not rows:
        emit("no export attempts")
    for r in rows:
        emit(f"attempt {r.attempt}: {r.status}{' (forced)' if r.forced else ''}  export_id {r.id}")
        emit(f"  file        {r.filename}")
        emit(f"  dropzone    {r.dropzone_path}")
        emit(f"  archive     {r.storage_key}")
        emit(f"  sha256      {r.content_sha256}  ({r.byte_size} bytes, {r.line_count} lines)")
        emit(f"  run         {r.dagster_run_id or '-'}")
        emit(
            f"  created {when(r.created_at)}, sent {when(r.sent_at) if r.sent_at else '-'}, "
            f"acked {when(r.acked_at) if r.acked_at else '-'}"
        )
        if r.erp_order_number:
            emit(f"  ERP order   {excerpt(r.erp_order_number, 200)}")
        if r.error_code:
            emit(
                f"  error       {r.error_code}: {excerpt(r.error_message or '', FULL_ERROR_CHARS)}"
            )
    if request is not None:
        emit(
            f"requests: {request.request_count} (re-drives {request.redrive_count}), last "
            f"outcome {request.last_outcome or 'none reported'}: "
            f"{excerpt(request.last_reason or '', FULL_ERROR_CHARS)}"
        )
    return 0


def backlog_reason(candidate: Any, configs: Mapping[str, ConnectorConfig], now: Any) -> str:
    """Why an APPROVED draft without a PENDING/SENT/ACKED export has not gone out (yet)."""
    from orderflow_exports.domain.drafts import refusal_reason
    from orderflow_exports.domain.export_requests import request_reason
    from orderflow_exports.domain.naming import DraftRef

    draft = candidate.draft
    ref = DraftRef(draft.org_id, draft.id)
    config = configs.get(ref.org_id)
    if config is None:
        return "no connector"
    if not config.enabled:
        return "connector disabled"
    refused = refusal_reason(ref, draft)
    if refused is not None:
        return f"refused: {refused}"
    request = candidate.request
    if request is not None and request.needs_person_since is not None:
        return f"needs a person ({request.last_outcome}: {request.last_reason})"
    if candidate.ever_sent:
        return "sent once, then failed: only a person re-sends it (`exports retry`)"
    reason = request_reason(candidate, now)
    if reason is not None:
        return f"not yet ticked: the next sensor tick requests it ({reason})"
    if request is not None and request.last_outcome is None:
        return "requested, its run has not reported yet"
    if request is not None and request.next_due_at is not None:
        return f"waiting for its re-drive at {when(request.next_due_at)}"
    return f"not requested automatically (last outcome {request.last_outcome if request else '-'})"


def cmd_exports_backlog(args: argparse.Namespace) -> int:
    """APPROVED drafts with no PENDING/SENT/ACKED export, each with the reason."""
    import json
    from datetime import UTC, datetime

    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.adapters.sql.drafts import SqlDraftSource
    from orderflow_exports.application.planning import candidate_pages

    check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    engine = open_engine()
    configs = {c.org_id: c for c in SqlConnectorConfigs(engine).list()}
    now = datetime.now(UTC)
    lines: list[tuple[str, str]] = []
    unreadable: list[str] = []
    for page in candidate_pages(SqlDraftSource(engine), now, page_size=2000, max_scanned=200_000):
        unreadable.extend(str(u) for u in page.unreadable)
        for candidate in page.candidates:
            draft = candidate.draft
            if args.org is not None and draft.org_id != args.org:
                continue
            lines.append((f"{draft.org_id}:{draft.id}", backlog_reason(candidate, configs, now)))
        if len(lines) >= args.limit:
            break
    lines = lines[: args.limit]
    if args.json:
        emit(json.dumps([{"draft": k, "reason": r} for k, r in lines], indent=2))
        return 0
    if not lines and not unreadable:
        emit("no backlog: every approved draft has an export in progress or sent")
    for key, reason in lines:
        emit(f"{key}  {reason}")
    for bad in unreadable:
        emit(f"unreadable draft: {bad}")
    return 0
