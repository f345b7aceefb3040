"""A whole embedded environment for one test: DAGSTER_HOME, database, dropzones, store."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.defs.partitions import APPROVED_DRAFTS_PARTITIONS_NAME
from orderflow_exports.demo import SampleDraft, insert_drafts, local_connector, prepare_database
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord

warnings.filterwarnings("ignore", category=dg.BetaWarning)


@dataclass
class OrderflowEnv:
    """Handles to everything one test's exporter touches."""

    home: Path
    database_url: str
    engine: Engine
    instance: dg.DagsterInstance
    dropzones: Path
    store_root: Path

    @property
    def ledger(self) -> SqlExportLedger:
        return SqlExportLedger(self.engine)

    @property
    def configs(self) -> SqlConnectorConfigs:
        return SqlConnectorConfigs(self.engine)

    def add_local_connector(self, org_id: str, **overrides: Any) -> ConnectorConfig:
        config = replace(local_connector(org_id, self.dropzones), **overrides)
        self.configs.upsert(config)
        return config

    def add_drafts(self, *samples: SampleDraft, partitions: bool = True) -> list[str]:
        insert_drafts(self.engine, samples)
        keys = [f"{s.org_id}:{s.draft_id}" for s in samples]
        if partitions:
            self.add_partitions(keys)
        return keys

    def add_partitions(self, keys: Sequence[str]) -> None:
        known = set(self.instance.get_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME))
        new = [k for k in keys if k not in known]
        if new:
            self.instance.add_dynamic_partitions(APPROVED_DRAFTS_PARTITIONS_NAME, new)

    def run_export(
        self, keys: Sequence[str], *, force: bool = False, raise_on_error: bool = False
    ) -> dg.ExecuteInProcessResult:
        """``export_drafts_job`` in process over ``keys`` (one run, contiguous keys)."""
        from orderflow_exports import defs

        job = defs.resolve_job_def("export_drafts_job")
        run_config = {"ops": {"export_json": {"config": {"force": force}}}}
        if len(keys) == 1:
            return job.execute_in_process(
                instance=self.instance,
                partition_key=keys[0],
                run_config=run_config,
                raise_on_error=raise_on_error,
            )
        tags = {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
        return job.execute_in_process(
            instance=self.instance, tags=tags, run_config=run_config, raise_on_error=raise_on_error
        )

    def exports(self, key: str) -> list[ExportRecord]:
        org_id, _, draft_id = key.partition(":")
        rows = [r for r in self.ledger.list(org_id=org_id, limit=10_000)]
        return sorted((r for r in rows if r.draft_order_id == draft_id), key=lambda r: r.attempt)

    def outbox(self, org_id: str) -> Path:
        return self.dropzones / org_id / "outbox"


@contextlib.contextmanager
def orderflow_environment(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OrderflowEnv]:
    """A temporary DAGSTER_HOME, local folders and OrderFlow's tables at ``database_url``."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    store_root = tmp_path / "store"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("ORDERFLOW_EXPORT_STORE", str(store_root))
    engine = make_engine(database_url)
    prepare_database(engine)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield OrderflowEnv(
            home=home,
            database_url=database_url,
            engine=engine,
            instance=instance,
            dropzones=tmp_path / "dropzones",
            store_root=store_root,
        )
    engine.dispose()


@pytest.fixture
def orderflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OrderflowEnv]:
    """Embedded defaults (SQLite, local folders) in a temporary DAGSTER_HOME."""
    url = f"sqlite:///{tmp_path / 'orderflow.db'}"
    with orderflow_environment(url, tmp_path, monkeypatch) as env:
        yield env
