"""Engines for our database URL, and schema management (Alembic migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from orderflow_exports.adapters.sql.tables import core_metadata

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaNotReady(RuntimeError):
    """Our tables are missing or older than this code: run ``orderflow-exports db upgrade``."""


def normalize_url(url: str) -> str:
    """Select psycopg 3 for a plain ``postgresql://`` URL (psycopg2 may not be installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Apply our Alembic migrations (idempotent)."""
    command.upgrade(_alembic_config(engine), revision)


def head_revision() -> str | None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(engine: Engine) -> None:
    """Fail clearly, before any export, when migrations have not been applied."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotReady(
            f"database {engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{current or 'none'}, this code needs {head}: run `orderflow-exports db upgrade`"
        )


def create_core_tables_for_demo(engine: Engine) -> None:
    """Create OrderFlow core's tables (NOT OURS) for the demo and tests; never in production."""
    core_metadata.create_all(engine)
