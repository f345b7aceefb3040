"""Database fixtures: SQLite always, PostgreSQL on 127.0.0.1:5432 (a fresh database per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.demo import prepare_database
from orderflow_exports_tests.support.components import require_component

PG_ADMIN_URL = os.environ.get(
    "ORDERFLOW_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_available() -> tuple[bool, str]:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True, ""
    except psycopg.Error as exc:
        return False, f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}".strip()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    available, reason = _pg_available()
    require_component(available, reason)
    return PG_ADMIN_URL


@pytest.fixture
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"oft_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """Every database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orderflow.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """Migrated database (plus core's tables, NOT OURS) on SQLite and PostgreSQL."""
    engine = make_engine(database_url)
    prepare_database(engine)
    try:
        yield engine
    finally:
        engine.dispose()
