"""``erp_connector_config`` through SQLAlchemy Core."""

from __future__ import annotations

import builtins
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from orderflow_exports.adapters.sql.tables import erp_connector_config
from orderflow_exports.domain.records import ConnectorConfig

_FIELDS = tuple(ConnectorConfig.__dataclass_fields__)


class SqlConnectorConfigs:
    """The ``ConnectorConfigs`` port: one row per org."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, org_id: str) -> ConnectorConfig | None:
        query = select(erp_connector_config).where(erp_connector_config.c.org_id == org_id)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else self._config(row._mapping)

    def list(self, *, enabled_only: bool = False) -> builtins.list[ConnectorConfig]:
        query = select(erp_connector_config).order_by(erp_connector_config.c.org_id)
        if enabled_only:
            query = query.where(erp_connector_config.c.enabled.is_(True))
        with self._engine.connect() as conn:
            return [self._config(row._mapping) for row in conn.execute(query)]

    def upsert(self, config: ConnectorConfig) -> None:
        values = {**asdict(config), "updated_at": datetime.now(UTC)}
        with self._engine.begin() as conn:
            conn.execute(
                delete(erp_connector_config).where(erp_connector_config.c.org_id == config.org_id)
            )
            conn.execute(insert(erp_connector_config).values(**values))

    @staticmethod
    def _config(row: object) -> ConnectorConfig:
        mapping = dict(row)  # type: ignore[call-overload]
        return ConnectorConfig(**{name: mapping[name] for name in _FIELDS})
