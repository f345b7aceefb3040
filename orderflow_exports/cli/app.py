"""The ``orderflow-exports`` parser and ``main``: one line per error, exit 2 or 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import orderflow_exports.quiet_warnings  # noqa: F401  (the accepted Dagster warnings, see there)
from orderflow_exports.cli import acks, basics, connectors, exports
from orderflow_exports.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EnvironmentProblem,
    fail,
)
from orderflow_exports.domain.errors import OrderflowError


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage stays available through --help)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orderflow-exports",
        description="Operate the DROPZONE_JSON_V1 exporter. The database comes from "
        "ORDERFLOW_DATABASE_URL (default: SQLite under $DAGSTER_HOME/orderflow).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    groups = parser.add_subparsers(dest="group", required=True)
    _register_subcommands(groups)
    return parser


def _register_subcommands(groups: Any) -> None:
    """Each command group adds its parser from its own module, in the order --help lists them."""
    from orderflow_exports.erp_sim.cli import register as register_erp_sim

    basics.register_db(groups)
    connectors.register(groups)
    exports.register(groups)
    acks.register(groups)
    basics.register_demo_and_schema(groups)
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
        return fail(str(exc), EXIT_ENVIRONMENT)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return fail(
            f"database error ({detail[0] if detail else type(exc).__name__}); check "
            "ORDERFLOW_DATABASE_URL, then `orderflow-exports db upgrade`",
            EXIT_ENVIRONMENT,
        )
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_ENVIRONMENT)
    except (OrderflowError, ValueError, RuntimeError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
