"""``orderflow-exports``: the operator's command line (database, connectors, exports, demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from orderflow_exports.domain.connector_rules import ack_deadline_hours_problem, connector_problems
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


def retry_hint(record: ExportRecord) -> str:
    key = f"{record.org_id}:{record.draft_order_id}"
    return (
        "retry: dagster job execute -m orderflow_exports -j export_drafts_job "
        f'--tags \'{{"dagster/partition": "{key}"}}\'  (or in the UI: '
        f"/assets/export_json?view=partitions&partition={key} → Materialize)"
    )


def format_exports(records: Sequence[ExportRecord]) -> str:
    if not records:
        return "no exports"
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
            f"{r.error_code}: {(r.error_message or '')[:80]}" if r.error_code else "",
        ]
        for r in records
    ]
    text = _table(headers, rows)
    newest: dict[tuple[str, str], int] = {}
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
            f"{r.org_id}:{r.draft_order_id} attempt {r.attempt} FAILED — {retry_hint(r)}"
            for r in failed
        )
    return text


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
    problems = connector_problems(config, configs.list())
    if problems:
        raise UsageError(f"connector of {config.org_id} refused: {'; '.join(problems)}")
    configs.upsert(config)
    emit(f"connector of {config.org_id} saved ({config.transport}, enabled={config.enabled})")
    return 0


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

    if not 1 <= args.limit <= MAX_LIST_LIMIT:
        raise UsageError(f"--limit {args.limit} is not between 1 and {MAX_LIST_LIMIT}")
    if args.org is not None:
        validate_id(args.org, "--org")
    status = ExportStatus(args.status) if args.status else None
    records = SqlExportLedger(_engine()).list(org_id=args.org, status=status, limit=args.limit)
    emit(format_exports(records))
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

    exports = groups.add_parser("exports", help="export attempts (erp_export)")
    esub = exports.add_subparsers(dest="cmd", required=True)
    elist = esub.add_parser("list", help="list export attempts, newest first")
    elist.add_argument("--org")
    elist.add_argument("--status", choices=[s.value for s in ExportStatus])
    elist.add_argument("--limit", type=int, default=100)
    elist.set_defaults(func=cmd_exports_list)

    groups.add_parser("demo", help="seed demo data and run the export job").set_defaults(
        func=cmd_demo
    )
    schema = groups.add_parser("schema", help="print the document's JSON Schema")
    schema.add_argument("--write", metavar="PATH")
    schema.set_defaults(func=cmd_schema)
    return parser


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
