"""``erp_connector_config`` through SQLAlchemy Core."""

from __future__ import annotations

import builtins
import logging
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from orderflow_exports.adapters.sql.tables import erp_connector_config
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.records import ConnectorConfig

log = logging.getLogger(__name__)
_FIELDS = tuple(ConnectorConfig.__dataclass_fields__)


class SqlConnectorConfigs:
    """The ``ConnectorConfigs`` port: one row per org."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, org_id: str) -> ConnectorConfig | None:
        """The org's config; a row no config can be built from raises ExportError(CONFIG)."""
        query = select(erp_connector_config).where(erp_connector_config.c.org_id == org_id)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        try:
            return self._config(row._mapping)
        except (TypeError, ValueError) as exc:
            raise ExportError(
                ErrorCode.CONFIG,
                f"the connector row of org {org_id!r} is invalid: {exc}; fix it with "
                "`orderflow-exports connectors set`",
                transient=False,
            ) from None

    def list(self, *, enabled_only: bool = False) -> builtins.list[ConnectorConfig]:
        """Every valid config. A row written by another tool that is not a valid config is
        left out (with a warning), so it cannot stop the other orgs; ``get`` reports it."""
        query = select(erp_connector_config).order_by(erp_connector_config.c.org_id)
        if enabled_only:
            query = query.where(erp_connector_config.c.enabled.is_(True))
        configs: builtins.list[ConnectorConfig] = []
        with self._engine.connect() as conn:
            for row in conn.execute(query):
                try:
                    configs.append(self._config(row._mapping))
                except (TypeError, ValueError) as exc:
                    log.warning("connector row of org %r is invalid, skipped: %s", row.org_id, exc)
        return configs

    def upsert(self, config: ConnectorConfig) -> None:
        values = {**asdict(config), "updated_at": datetime.now(UTC)}
        with self._engine.begin() as conn:
            conn.execute(
                delete(erp_connector_config).where(erp_connector_config.c.org_id == config.org_id)
            )
            conn.execute(insert(erp_connector_config).values(**values))

    def delete(self, org_id: str) -> bool:
        """Remove the org's connector row; False when it had none."""
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(erp_connector_config).where(erp_connector_config.c.org_id == org_id)
            )
        return bool(result.rowcount)

    @staticmethod
    def _config(row: object) -> ConnectorConfig:
        mapping = dict(row)  # type: ignore[call-overload]
        return ConnectorConfig(**{name: mapping[name] for name in _FIELDS})
