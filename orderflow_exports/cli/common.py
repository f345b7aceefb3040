"""What every ``orderflow-exports`` command shares: output, exit codes, the database, tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orderflow_exports.domain.connector_rules import LocalFolders
from orderflow_exports.domain.records import ConnectorConfig

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def emit(text: str = "") -> None:
    sys.stdout.write(text + "\n")


MAX_LIST_LIMIT = 100_000
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 1


class UsageError(ValueError):
    """Bad input on the command line: one line on stderr, exit 2."""


class EnvironmentProblem(RuntimeError):
    """The database cannot be used as it is (unreachable, no schema): one line, exit 1."""


def open_engine(*, require_schema: bool = True) -> Engine:
    """This environment's OrderFlow database; ``require_schema``: at the current revision."""
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
            raise EnvironmentProblem(database_unreachable(engine, exc)) from None
    return engine


def database_unreachable(engine: Any, exc: Exception) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (
        f"cannot use the database {engine.url.render_as_string(hide_password=True)} "
        f"({detail[0] if detail else type(exc).__name__}); check ORDERFLOW_DATABASE_URL and that "
        "the server is running, then `orderflow-exports db upgrade`"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(s.rstrip() for s in out)


def local_folders(configs: list[ConnectorConfig]) -> LocalFolders:
    """Real paths of local connector folders, and the code location's own folders as this
    environment configures them (the same settings the code location reads)."""
    from orderflow_exports.adapters.local_folders import resolve_local_folders
    from orderflow_exports.defs.settings import default_dropzone_home, reserved_local_folders

    return resolve_local_folders(configs, reserved_local_folders(), default_dropzone_home())


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise UsageError(f"--limit {limit} is not between 1 and {MAX_LIST_LIMIT}")


def when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "unknown time"


def fail(message: str, code: int) -> int:
    # One line: a message holding line breaks (a bad value) would look like several errors.
    one_line = " ".join(message.split())
    sys.stderr.write(f"orderflow-exports: error: {one_line}\n")
    return code
