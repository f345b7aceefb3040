"""``db upgrade``, ``demo`` and ``schema``: setting up the database, the demo, the JSON Schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orderflow_exports.cli.common import (
    EnvironmentProblem,
    database_unreachable,
    emit,
    open_engine,
)


def register_db(groups: Any) -> None:
    """Add the ``db`` group."""
    db = groups.add_parser("db", help="database schema").add_subparsers(dest="cmd", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)


def register_demo_and_schema(groups: Any) -> None:
    """Add the ``demo`` and ``schema`` commands."""
    groups.add_parser("demo", help="seed demo data and run the export job").set_defaults(
        func=cmd_demo
    )
    schema = groups.add_parser("schema", help="print the document's JSON Schema")
    schema.add_argument("--write", metavar="PATH")
    schema.set_defaults(func=cmd_schema)


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from orderflow_exports.adapters.sql.engine import upgrade_schema

    engine = open_engine(require_schema=False)
    try:
        upgrade_schema(engine)
    except SQLAlchemyError as exc:
        raise EnvironmentProblem(database_unreachable(engine, exc)) from None
    emit(f"schema up to date: {engine.url.render_as_string(hide_password=True)}")
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
