"""Alembic environment: migrations run on the engine handed over by ``engine.upgrade_schema``."""

from __future__ import annotations

from alembic import context

from orderflow_exports.adapters.sql.tables import owned_metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=owned_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
