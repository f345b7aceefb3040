"""How export attempts read on the command line: the table, hints and re-send commands, JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orderflow_exports.cli.common import table
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

# What `exports retry --force` sends as run config (also what a UI launchpad needs).
FORCE_CONFIG = "ops: {export_json: {config: {force: true}}}"


def resend_command(org_id: str, draft_order_id: str, *, force: bool = False) -> str:
    """The command that re-sends the draft through the deployment (``--force`` over SENT/ACKED).

    It queues a run in the running Dagster deployment, so run retries and the per-host limit
    apply (a run of ``dagster job execute`` gets neither).
    """
    key = f"{org_id}:{draft_order_id}"
    command = f"orderflow-exports exports retry --org {org_id} --draft {draft_order_id}"
    if force:
        return (
            f"{command} --force  (or in the UI: /assets/export_json?view=partitions&"
            f"partition={key} → Materialize → Open launchpad, with `{FORCE_CONFIG}`)"
        )
    return (
        f"{command}  (or in the UI: /assets/export_json?view=partitions&partition={key} "
        "→ Materialize)"
    )


def retry_hint(record: ExportRecord, ack_path: str | None = None) -> str:
    """What a person should do about the FAILED export ``record`` (the draft's latest attempt).

    ``ack_path`` is the org's ack folder, named in the hint when known. Re-sending a FAILED
    latest attempt needs no force: only a SENT or ACKED one blocks a new attempt.
    """
    from orderflow_exports.adapters.sql.ledger import SUPERSEDED
    from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT, ERP_REJECTED
    from orderflow_exports.domain.ack_files import excerpt

    command = resend_command(record.org_id, record.draft_order_id)
    if record.error_code == SUPERSEDED:
        return "no action needed: a forced export replaced this attempt"
    if record.error_code == ACK_TIMEOUT:
        folder = ack_path.rstrip("/") if ack_path else "<ack_path>"
        return (
            "no ack within the org's deadline. Check the ERP first: it may hold this order "
            f"(look for export id {record.id} / file {record.filename} in its inbox and in "
            f"{folder}/error/). Re-send only if it does not (no force needed: the latest attempt "
            f"is FAILED): {command}. Timeouts are never declared while the org's ack folder "
            "cannot be read"
        )
    if record.error_code == ERP_REJECTED:
        # The message is the ERP's text: escaped, so that it cannot drive the terminal.
        return (
            f'the ERP refused it: "{excerpt(record.error_message or "", 300)}". Fix the cause '
            f"(in OrderFlow or with the ERP); a re-send makes a new attempt: {command}"
        )
    return f"retry: {command}"


def format_exports(
    records: Sequence[ExportRecord],
    ack_paths: Mapping[str, str] | None = None,
    latest_attempts: Mapping[tuple[str, str], int] | None = None,
    *,
    full_errors: bool = False,
) -> str:
    """The attempts as a table, then a hint for each failure that is its draft's latest attempt.

    ``ack_paths`` (org → ack folder) lets a hint name the folder to look in. ``latest_attempts``
    ((org, draft) → its latest attempt in the ledger) decides which failures are latest; without
    it only the listed rows are compared, which a filter or a limit can mislead.
    """
    from orderflow_exports.domain.ack_files import excerpt

    if not records:
        return "no exports"
    error_width = FULL_ERROR_CHARS if full_errors else 80
    headers = [
        "org",
        "draft",
        "attempt",
        "status",
        "export_id",
        "bytes",
        "lines",
        "created_at",
        "error",
    ]
    rows = [
        [
            r.org_id,
            r.draft_order_id,
            r.attempt,
            str(r.status) + (" (forced)" if r.forced else ""),
            r.id,
            r.byte_size,
            r.line_count,
            r.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            # error_message may quote the ERP: escaped, never raw control characters.
            f"{r.error_code}: {excerpt(r.error_message or '', error_width)}"
            if r.error_code
            else "",
        ]
        for r in records
    ]
    text = table(headers, rows)
    newest: dict[tuple[str, str], int] = dict(latest_attempts or {})
    for r in records:
        key = (r.org_id, r.draft_order_id)
        newest[key] = max(newest.get(key, 0), r.attempt)
    # Only a failure that is still the draft's latest attempt needs someone to act.
    failed = [
        r
        for r in records
        if r.status is ExportStatus.FAILED and r.attempt == newest[(r.org_id, r.draft_order_id)]
    ]
    if failed:
        text += "\n\n" + "\n".join(
            f"{r.org_id}:{r.draft_order_id} attempt {r.attempt} FAILED — "
            f"{retry_hint(r, (ack_paths or {}).get(r.org_id))}"
            for r in failed
        )
    return text


# Far above any message we store; excerpt() still escapes control characters.
FULL_ERROR_CHARS = 100_000


def record_json(record: ExportRecord) -> dict[str, Any]:
    """One ``erp_export`` row as JSON-ready values (timestamps ISO 8601, UTC)."""
    from dataclasses import asdict

    out: dict[str, Any] = {}
    for name, value in asdict(record).items():
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    out["status"] = str(record.status)
    return out
