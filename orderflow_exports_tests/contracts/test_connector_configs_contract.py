"""The ``ConnectorConfigs`` contract: ``SqlConnectorConfigs`` on SQLite and PostgreSQL, its fake."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.domain.ports import ConnectorConfigs
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.fakes.sources import FakeConnectorConfigs

SFTP = ConnectorConfig(
    org_id="acme",
    transport="sftp",
    export_path="/in",
    ack_path="/out",
    host="h",
    port=2222,
    username="u",
    host_key="SHA256:abc",
    private_key_ref="env:ORDERFLOW_SECRET_ACME_KEY",
)
OFF = ConnectorConfig(
    org_id="off", transport="local", export_path="/a", ack_path="/b", enabled=False
)


@pytest.fixture
def configs(database: Engine | None) -> ConnectorConfigs:
    return FakeConnectorConfigs() if database is None else SqlConnectorConfigs(database)


def test_configs_round_trip_and_list_by_org(configs: ConnectorConfigs) -> None:
    assert configs.get("acme") is None and configs.list() == []
    configs.upsert(OFF)
    configs.upsert(SFTP)
    assert configs.get("acme") == SFTP
    assert [c.org_id for c in configs.list()] == ["acme", "off"]
    assert [c.org_id for c in configs.list(enabled_only=True)] == ["acme"]


def test_upsert_replaces_the_org_s_config_and_stamps_it(configs: ConnectorConfigs) -> None:
    configs.upsert(SFTP)
    first = configs.get("acme")
    assert first is not None and first.updated_at is not None
    moved = ConnectorConfig(org_id="acme", transport="local", export_path="/x", ack_path="/y")
    configs.upsert(moved)
    assert configs.get("acme") == moved
    assert configs.list() == [moved]
    again = configs.get("acme")
    assert again is not None and again.updated_at is not None
    assert again.updated_at >= first.updated_at and again.updated_at.tzinfo is not None
