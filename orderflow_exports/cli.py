"""``orderflow-exports``: the operator's command line (database, connectors, exports, demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orderflow_exports.quiet_warnings  # noqa: F401  (the accepted Dagster warnings, see there)
from orderflow_exports.domain.connector_rules import (
    LocalFolders,
    ack_deadline_hours_problem,
    connector_problems,
)
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.naming import validate_id
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus


def emit(text: str = "") -> None:
    sys.stdout.write(text + "\n")


MAX_LIST_LIMIT = 100_000
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 1


class UsageError(ValueError):
    """Bad input on the command line: one line on stderr, exit 2."""


class EnvironmentProblem(RuntimeError):
    """The database cannot be used as it is (unreachable, no schema): one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage stays available through --help)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_BAD_INPUT)


def _engine(*, require_schema: bool = True):  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import SQLAlchemyError

    from orderflow_exports.adapters.sql.engine import (
        SchemaNotReady,
        make_engine,
        require_current_schema,
    )
    from orderflow_exports.defs.settings import resolve_database_url

    try:
        engine = make_engine(resolve_database_url(None))
    except (SQLAlchemyError, ValueError) as exc:
        raise EnvironmentProblem(
            f"the database URL cannot be used ({type(exc).__name__}); check "
            "ORDERFLOW_DATABASE_URL (a SQLAlchemy URL)"
        ) from None
    if require_schema:
        try:
            require_current_schema(engine)
        except SchemaNotReady as exc:
            raise EnvironmentProblem(str(exc)) from None
        except SQLAlchemyError as exc:
            raise EnvironmentProblem(_database_unreachable(engine, exc)) from None
    return engine


def _database_unreachable(engine: Any, exc: Exception) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (
        f"cannot use the database {engine.url.render_as_string(hide_password=True)} "
        f"({detail[0] if detail else type(exc).__name__}); check ORDERFLOW_DATABASE_URL and that "
        "the server is running, then `orderflow-exports db upgrade`"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(s.rstrip() for s in out)


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
    from orderflow_exports.domain.acks import ACK_TIMEOUT, ERP_REJECTED, excerpt

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
    from orderflow_exports.domain.acks import excerpt

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
    text = _table(headers, rows)
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


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from orderflow_exports.adapters.sql.engine import upgrade_schema

    engine = _engine(require_schema=False)
    try:
        upgrade_schema(engine)
    except SQLAlchemyError as exc:
        raise EnvironmentProblem(_database_unreachable(engine, exc)) from None
    emit(f"schema up to date: {engine.url.render_as_string(hide_password=True)}")
    return 0


def connector_from_args(args: argparse.Namespace) -> ConnectorConfig:
    """The config ``connectors set`` was given, checked on its own (no database needed).

    Raises UsageError naming the option and the value; secrets are never quoted (only refs).
    """
    deadline = ack_deadline_hours_problem(args.ack_deadline_hours)
    if deadline:
        raise UsageError(deadline)
    if args.transport == "local":
        given = [name for name in ("host", "port", "username", "host_key") if getattr(args, name)]
        given += [n for n in ("private_key_ref", "password_ref") if getattr(args, n)]
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"a local connector takes no {options}")
    try:
        config = ConnectorConfig(
            org_id=args.org,
            transport=args.transport,
            export_path=args.export_path,
            ack_path=args.ack_path,
            enabled=not args.disabled,
            host=args.host,
            port=args.port,
            username=args.username,
            host_key=args.host_key,
            private_key_ref=args.private_key_ref,
            password_ref=args.password_ref,
            ack_deadline_seconds=int(args.ack_deadline_hours * 3600),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    own = connector_problems(config, [])
    if own:
        raise UsageError(f"connector of {config.org_id} refused: {'; '.join(own)}")
    if config.transport == "sftp":
        from orderflow_exports.adapters.sftp_dropzone import parse_host_keys

        try:
            pins = parse_host_keys(config.host_key)
        except ValueError as exc:
            raise UsageError(f"--host-key: {exc}") from None
        if not pins:
            raise UsageError("--host-key holds no key (a known_hosts line or SHA256: fingerprint)")
    return config


def check_secret_refs(config: ConnectorConfig) -> None:
    """Each secret reference is in the org's scope; a ``file:`` one names a safe, readable file.

    ``env:`` variables are not looked up: they belong to the code location's environment, not
    to the shell running this command.
    """
    from orderflow_exports.adapters.secrets import SecretScope, SecretUnavailable
    from orderflow_exports.defs.settings import resolve_secret_dirs

    try:
        scope = SecretScope(resolve_secret_dirs(None))
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None
    for option, ref in (
        ("--private-key-ref", config.private_key_ref),
        ("--password-ref", config.password_ref),
    ):
        if ref is None:
            continue
        try:
            scope.check(ref, config.org_id, must_exist=True)
        except SecretUnavailable as exc:
            raise UsageError(f"{option}: {exc}") from None


def cmd_connectors_set(args: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    config = connector_from_args(args)
    check_secret_refs(config)
    configs = SqlConnectorConfigs(_engine())
    saved = configs.list()
    # Saving refuses a conflict with any row, enabled or not, older or newer.
    problems = connector_problems(config, saved, local=_local_folders([config, *saved]))
    if problems:
        raise UsageError(f"connector of {config.org_id} refused: {'; '.join(problems)}")
    configs.upsert(config)
    emit(f"connector of {config.org_id} saved ({config.transport}, enabled={config.enabled})")
    return 0


def _local_folders(configs: list[ConnectorConfig]) -> LocalFolders:
    """Real paths of local connector folders, and the code location's own folders as this
    environment configures them (the same settings the code location reads)."""
    from orderflow_exports.adapters.local_folders import resolve_local_folders
    from orderflow_exports.defs.settings import default_dropzone_home, reserved_local_folders

    return resolve_local_folders(configs, reserved_local_folders(), default_dropzone_home())


def cmd_connectors_list(_: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    configs = SqlConnectorConfigs(_engine()).list()
    if not configs:
        emit("no connectors")
        return 0
    headers = [
        "org",
        "enabled",
        "transport",
        "endpoint",
        "export_path",
        "ack_path",
        "ack_deadline_h",
        "secret_ref",
    ]
    rows = [
        [
            c.org_id,
            c.enabled,
            c.transport,
            c.endpoint,
            c.export_path,
            c.ack_path,
            c.ack_deadline_seconds / 3600,
            c.private_key_ref or c.password_ref or "",
        ]
        for c in configs
    ]
    emit(_table(headers, rows))
    return 0


def cmd_exports_list(args: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.naming import DraftRef

    _check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    status = ExportStatus(args.status) if args.status else None
    engine = _engine()
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


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise UsageError(f"--limit {limit} is not between 1 and {MAX_LIST_LIMIT}")


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "unknown time"


def cmd_exports_attention(args: argparse.Namespace) -> int:
    """Drafts a person must look at: automatic requests stopped, or the ERP timed out/refused."""
    from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.acks import ACK_TIMEOUT, ERP_REJECTED, excerpt
    from orderflow_exports.domain.naming import DraftRef

    _check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    engine = _engine()
    ledger = SqlExportLedger(engine)
    ack_paths = _ack_paths(engine)
    stopped = SqlExportRequests(engine).needing_person(org_id=args.org, limit=args.limit)
    failed = ledger.latest_failed((ACK_TIMEOUT, ERP_REJECTED), org_id=args.org, limit=args.limit)
    lines: dict[tuple[str, str], str] = {}
    for record in failed:
        lines[(record.org_id, record.draft_order_id)] = (
            f"{record.org_id}:{record.draft_order_id} attempt {record.attempt} FAILED "
            f"{record.error_code} at {_when(record.updated_at)} — "
            f"{retry_hint(record, ack_paths.get(record.org_id))}"
        )
    for request in stopped:
        key = (request.org_id, request.draft_order_id)
        why = (
            f"automatic requests stopped at {_when(request.needs_person_since)} after "
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


# Notes beside parked acks are ours and small; anything larger was not written by us.
MAX_ERROR_NOTE_BYTES = 2048


class _OrgUnavailable(Exception):
    """One org's error folder cannot be listed; the command goes on with the other orgs."""


def _note_summary(note: bytes) -> str:
    """``code: reason (rejected at)`` from a note we wrote, escaped; the note as a glimpse
    when it does not hold those lines (someone on the ERP's side may have changed it)."""
    from orderflow_exports.domain.acks import excerpt

    fields: dict[str, str] = {}
    for line in note.decode("utf-8", errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep and name in ("code", "reason", "rejected at"):
            fields[name] = value
    if "code" not in fields and "reason" not in fields:
        return "note: " + excerpt(note.decode("utf-8", errors="replace"), 300)
    summary = f"{excerpt(fields.get('code', '?'), 40)}: {excerpt(fields.get('reason', ''), 300)}"
    if "rejected at" in fields:
        summary += f" (rejected at {excerpt(fields['rejected at'], 40)})"
    return summary


def _error_folder_listing(
    config: ConnectorConfig,
    others: list[ConnectorConfig],
    sessions: Any,
    limit: int,
    local: LocalFolders,
) -> list[str]:
    """The lines for one org's ``<ack_path>/error/``; raises _OrgUnavailable."""
    import posixpath

    from orderflow_exports.application.acks.folder import ERROR, ERROR_NOTE_SUFFIX
    from orderflow_exports.domain.acks import excerpt
    from orderflow_exports.domain.errors import ExportError

    org = config.org_id
    # A folder shared with another org would show that org's files: refused, as the ack pass does.
    problems = connector_problems(config, others, local=local, conflicts_with="earlier")
    if problems:
        raise _OrgUnavailable("connector config refused: " + "; ".join(problems))
    folder = posixpath.join(config.ack_path, ERROR)
    try:
        session = sessions.session_for(config)
        ack_entries = session.list_entries(config.ack_path)
        found = next((e for e in ack_entries if e.name == ERROR), None)
        if found is None:
            return [f"{org}: no rejected acks ({folder}/ does not exist yet)"]
        if found.kind != "dir":
            raise _OrgUnavailable(f"{folder} is a {found.kind}, not a folder; not reading it")
        entries = session.list_entries(folder)
    except ExportError as exc:
        sessions.discard(config)
        raise _OrgUnavailable(f"[{exc.code}] {exc.message}") from None
    by_name = {e.name: e for e in entries}
    parked = [e for e in entries if not e.name.endswith(ERROR_NOTE_SUFFIX)]
    parked.sort(key=lambda e: (-(e.mtime or 0.0), e.name))  # newest first
    if not parked:
        return [f"{org}: no rejected acks in {folder}/"]
    lines = [f"{org}: {len(parked)} rejected ack(s) in {folder}/, newest first"]
    for entry in parked[:limit]:
        shown = excerpt(entry.name, 120)
        if entry.kind != "file":
            lines.append(f"  {shown}  (a {entry.kind}, not a parked ack; not read)")
            continue
        note = by_name.get(entry.name + ERROR_NOTE_SUFFIX)
        if note is None:
            lines.append(f"  {shown}  (no note beside it)")
        elif note.kind != "file":
            lines.append(f"  {shown}  (its note is a {note.kind}; not read)")
        elif note.size is not None and note.size > MAX_ERROR_NOTE_BYTES:
            lines.append(f"  {shown}  (its note is over {MAX_ERROR_NOTE_BYTES} bytes; not shown)")
        else:
            try:
                text = session.read_file(folder, note.name, MAX_ERROR_NOTE_BYTES)
            except ExportError as exc:
                if exc.transient:
                    sessions.discard(config)
                    raise _OrgUnavailable(f"[{exc.code}] {exc.message}") from None
                lines.append(f"  {shown}  (its note cannot be read: {excerpt(exc.message)})")
                continue
            lines.append(f"  {shown}  {_note_summary(text)}")
    if len(parked) > limit:
        lines.append(f"  ... and {len(parked) - limit} more (raise --limit to see them)")
    return lines


def cmd_acks_errors(args: argparse.Namespace) -> int:
    """List each org's refused acks (``<ack_path>/error/``) with the reason noted beside them."""
    from orderflow_exports.adapters.dropzones import DropzoneSessions
    from orderflow_exports.adapters.secrets import SecretScope
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.defs.settings import resolve_secret_dirs
    from orderflow_exports.domain.acks import excerpt

    _check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    configs = SqlConnectorConfigs(_engine()).list()
    enabled = [c for c in configs if c.enabled]
    if args.org is not None:
        chosen = [c for c in configs if c.org_id == args.org]
        if not chosen:
            raise UsageError(
                f"org {args.org} has no connector (see `orderflow-exports connectors list`)"
            )
    else:
        chosen = enabled
    if not chosen:
        emit("no enabled connectors")
        return 0
    try:
        scope = SecretScope(resolve_secret_dirs(None))
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None

    # The same sessions the ack pass opens: pinned host keys, secrets from the org's scope.
    def sftp_settings() -> Any:
        # Imported only when an org uses SFTP: local-only setups never load paramiko.
        from orderflow_exports.adapters.sftp_dropzone import SftpSettings

        return SftpSettings(secrets=scope)

    sessions = DropzoneSessions(sftp_settings_factory=sftp_settings)
    unavailable: list[str] = []
    try:
        local = _local_folders(configs)
        for config in chosen:
            # Every row, enabled or not, as the ack pass compares them.
            others = [c for c in configs if c.org_id != config.org_id]
            try:
                lines = _error_folder_listing(config, others, sessions, args.limit, local)
            except _OrgUnavailable as exc:
                lines = [f"{config.org_id}: cannot list its error folder: {excerpt(str(exc), 400)}"]
                unavailable.append(config.org_id)
            except Exception as exc:  # noqa: BLE001 - one org's fault must not hide the others
                sessions.discard(config)
                lines = [
                    f"{config.org_id}: cannot list its error folder: unexpected "
                    f"{type(exc).__name__}: {excerpt(str(exc), 300)}"
                ]
                unavailable.append(config.org_id)
            for line in lines:
                emit(line)
    finally:
        sessions.close()
    if unavailable:
        return _fail(
            f"the error folders of {len(unavailable)} org(s) could not be listed: "
            + ", ".join(unavailable),
            EXIT_ENVIRONMENT,
        )
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
    _check_limit(args.limit)
    if args.wait_timeout <= 0:
        raise UsageError(f"--wait-timeout {args.wait_timeout} is not a positive number of seconds")
    try:
        deployment = GraphQLDeployment(_ui_base(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    engine = _engine()
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
        return _fail(f"{failed} of {len(launches)} retried draft(s) did not succeed", 1)
    return 0


def cmd_exports_show(args: argparse.Namespace) -> int:
    """Every attempt of one draft in full, its request record and its page in the UI."""
    import json
    import urllib.parse

    from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
    from orderflow_exports.adapters.sql.ledger import SqlExportLedger
    from orderflow_exports.domain.acks import excerpt

    ref = _parse_draft_key(args.key)
    engine = _engine()
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
            f"  created {_when(r.created_at)}, sent {_when(r.sent_at) if r.sent_at else '-'}, "
            f"acked {_when(r.acked_at) if r.acked_at else '-'}"
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
        return f"waiting for its re-drive at {_when(request.next_due_at)}"
    return f"not requested automatically (last outcome {request.last_outcome if request else '-'})"


def cmd_exports_backlog(args: argparse.Namespace) -> int:
    """APPROVED drafts with no PENDING/SENT/ACKED export, each with the reason."""
    import json
    from datetime import UTC, datetime

    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.adapters.sql.drafts import SqlDraftSource
    from orderflow_exports.application.planning import candidate_pages

    _check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    engine = _engine()
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


def _connector(engine: Any, org: str) -> ConnectorConfig:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    validate_id(org, "--org")
    config = SqlConnectorConfigs(engine).get(org)
    if config is None:
        raise UsageError(f"org {org} has no connector (see `orderflow-exports connectors list`)")
    return config


def cmd_connectors_show(args: argparse.Namespace) -> int:
    """One connector in full (secret references only) and the rules it breaks, if any."""
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    engine = _engine()
    config = _connector(engine, args.org)
    others = [c for c in SqlConnectorConfigs(engine).list() if c.org_id != config.org_id]
    for name in (
        "org_id", "enabled", "transport", "endpoint", "export_path", "ack_path", "host_key",
        "private_key_ref", "password_ref", "ack_deadline_seconds", "updated_at",
    ):  # fmt: skip
        emit(f"{name:<21} {getattr(config, name)}")
    problems = connector_problems(
        config, others, local=_local_folders([config, *others]), conflicts_with="earlier"
    )
    emit("problems              " + ("; ".join(problems) if problems else "none"))
    return 0


def cmd_connectors_delete(args: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    engine = _engine()
    config = _connector(engine, args.org)
    if not args.yes:
        raise UsageError(f"deleting the connector of {config.org_id} needs --yes")
    SqlConnectorConfigs(engine).delete(config.org_id)
    emit(f"connector of {config.org_id} deleted; its exports and files are kept")
    return 0


def cmd_connectors_test(args: argparse.Namespace) -> int:
    """Connect as the export pass does and try each step the exporter needs; exit 1 on a failure."""
    import uuid

    from orderflow_exports.adapters.dropzones import DropzoneSessions
    from orderflow_exports.adapters.secrets import SecretScope
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.defs.settings import resolve_secret_dirs
    from orderflow_exports.domain.acks import excerpt
    from orderflow_exports.domain.naming import temp_filename

    engine = _engine()
    config = _connector(engine, args.org)
    others = [c for c in SqlConnectorConfigs(engine).list() if c.org_id != config.org_id]
    try:
        scope = SecretScope(resolve_secret_dirs(None))
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None

    def sftp_settings() -> Any:
        from orderflow_exports.adapters.sftp_dropzone import SftpSettings

        return SftpSettings(secrets=scope)

    sessions = DropzoneSessions(sftp_settings_factory=sftp_settings)
    # A hidden temp name: the ERP ignores it, and the stale-temp sweep would remove a leftover.
    final_name = f"orderflow-connector-test-{uuid.uuid4().hex}.json"
    probe = temp_filename(final_name)
    state: dict[str, Any] = {}
    problems = connector_problems(
        config, others, local=_local_folders([config, *others]), conflicts_with="earlier"
    )

    def rules() -> str:
        if problems:
            raise ValueError("; ".join(problems))
        return "none broken"

    def connect() -> str:
        state["session"] = sessions.session_for(config)
        return config.endpoint

    def listing(folder: str) -> Callable[[], str]:
        return lambda: f"{len(state['session'].list_entries(folder))} entries in {folder}"

    def write() -> str:
        state["session"].write_file(config.export_path, probe, b"{}")
        return f"{config.export_path}/{probe}"

    def remove() -> str:
        if not state["session"].remove_temp(config.export_path, final_name):
            raise ValueError("the test file was not there any more")
        return "removed"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("config rules", rules),
        ("connect (pinned host key, secret reference)", connect),
        ("list export folder", listing(config.export_path)),
        ("list ack folder", listing(config.ack_path)),
        ("write a temp file", write),
        ("remove the temp file", remove),
    ]
    failed = None
    try:
        for name, step in steps:
            try:
                detail = step()
            except Exception as exc:  # noqa: BLE001 - each step reports its own failure
                message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                code = getattr(exc, "code", None)
                emit(f"FAILED  {name}: {f'[{code}] ' if code else ''}{excerpt(message, 400)}")
                failed = name
                break
            emit(f"ok      {name}: {detail}")
    finally:
        sessions.close()
    if failed:
        return _fail(f"connector of {config.org_id} failed at: {failed}", EXIT_ENVIRONMENT)
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    from orderflow_exports.demo import run_demo

    return run_demo(emit)


def cmd_schema(args: argparse.Namespace) -> int:
    from orderflow_exports.domain.document import json_schema_text

    text = json_schema_text()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        emit(f"wrote {args.write}")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orderflow-exports",
        description="Operate the DROPZONE_JSON_V1 exporter. The database comes from "
        "ORDERFLOW_DATABASE_URL (default: SQLite under $DAGSTER_HOME/orderflow).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    groups = parser.add_subparsers(dest="group", required=True)

    db = groups.add_parser("db", help="database schema").add_subparsers(dest="cmd", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    connectors = groups.add_parser("connectors", help="per-org connector config")
    csub = connectors.add_subparsers(dest="cmd", required=True)
    cset = csub.add_parser("set", help="create or replace an org's connector")
    cset.add_argument("--org", required=True)
    cset.add_argument("--transport", choices=["local", "sftp"], required=True)
    cset.add_argument("--export-path", required=True)
    cset.add_argument("--ack-path", required=True)
    cset.add_argument("--host")
    cset.add_argument("--port", type=int)
    cset.add_argument("--username")
    cset.add_argument("--host-key", help="known_hosts line or SHA256: fingerprint")
    cset.add_argument("--private-key-ref", help="env:NAME or file:/path (never the key)")
    cset.add_argument("--password-ref", help="env:NAME or file:/path (never the password)")
    cset.add_argument("--ack-deadline-hours", type=float, default=24.0)
    cset.add_argument("--disabled", action="store_true")
    cset.set_defaults(func=cmd_connectors_set)
    csub.add_parser("list", help="list connectors").set_defaults(func=cmd_connectors_list)
    cshow = csub.add_parser("show", help="one connector in full, and the rules it breaks")
    cshow.add_argument("--org", required=True)
    cshow.set_defaults(func=cmd_connectors_show)
    ctest = csub.add_parser(
        "test", help="connect, list the export and ack folders, write and remove a temp file"
    )
    ctest.add_argument("--org", required=True)
    ctest.set_defaults(func=cmd_connectors_test)
    cdelete = csub.add_parser("delete", help="remove an org's connector (exports are kept)")
    cdelete.add_argument("--org", required=True)
    cdelete.add_argument("--yes", action="store_true", help="really delete it")
    cdelete.set_defaults(func=cmd_connectors_delete)

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

    acks = groups.add_parser("acks", help="ack files in the ERP dropzones")
    asub = acks.add_subparsers(dest="cmd", required=True)
    aerrors = asub.add_parser(
        "errors", help="refused acks in each enabled org's <ack_path>/error/, with the reason"
    )
    aerrors.add_argument("--org", help="only this org (also when its connector is disabled)")
    aerrors.add_argument("--limit", type=int, default=50, help="files shown per org")
    aerrors.set_defaults(func=cmd_acks_errors)

    groups.add_parser("demo", help="seed demo data and run the export job").set_defaults(
        func=cmd_demo
    )
    schema = groups.add_parser("schema", help="print the document's JSON Schema")
    schema.add_argument("--write", metavar="PATH")
    schema.set_defaults(func=cmd_schema)
    _register_subcommands(groups)
    return parser


def _register_subcommands(groups: Any) -> None:
    """Command groups kept in modules of their own: each adds its parser here."""
    from orderflow_exports.erp_sim.cli import register as register_erp_sim

    register_erp_sim(groups)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("orderflow_exports")
    except PackageNotFoundError:
        ours = "unknown"
    try:
        dagster = version("dagster")
    except PackageNotFoundError:
        dagster = "not installed"
    return f"{ours} (dagster {dagster})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input exits 2, an unusable database or file system 1, one line each."""
    from sqlalchemy.exc import SQLAlchemyError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EnvironmentProblem as exc:
        return _fail(str(exc), EXIT_ENVIRONMENT)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return _fail(
            f"database error ({detail[0] if detail else type(exc).__name__}); check "
            "ORDERFLOW_DATABASE_URL, then `orderflow-exports db upgrade`",
            EXIT_ENVIRONMENT,
        )
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_ENVIRONMENT)
    except (OrderflowError, ValueError, RuntimeError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)


def _fail(message: str, code: int) -> int:
    # One line: a message holding line breaks (a bad value) would look like several errors.
    one_line = " ".join(message.split())
    sys.stderr.write(f"orderflow-exports: error: {one_line}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
