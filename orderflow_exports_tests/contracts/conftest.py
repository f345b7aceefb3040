"""The backends the SQL-backed ports' contracts run on: SQLite, PostgreSQL, and their fakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.engine import make_engine, upgrade_schema


@pytest.fixture(params=["sqlite", "postgresql", "fake"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine | None]:
    """A migrated database on SQLite or PostgreSQL; None where the port's fake is tested."""
    if request.param == "fake":
        yield None
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'orderflow.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()
