"""The export partitions Dagster already knows, asked about a tick's keys only.

Reads Dagster's own partition table (``DynamicPartitionsTable``) through its SQL event log
storage: the only way to learn which of a few keys exist, and in which order, without loading
every partition key.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from sqlalchemy import select


class DagsterKnownPartitions:
    """Which of a tick's keys are partitions already, and which of those are neighbours.

    Asked about the tick's keys only, never by loading every partition key: with a year of
    history that list holds hundreds of thousands of keys. On Dagster's SQL event storage
    (SQLite, PostgreSQL) the partitions' storage ids give the order; on another storage the
    whole list is read, as Dagster's public API offers nothing narrower.
    """

    def __init__(
        self, instance: dg.DagsterInstance, partitions_def_name: str, keys: Sequence[str]
    ) -> None:
        self._storage = instance.event_log_storage
        self._name = partitions_def_name
        self._position: dict[str, int] = {}
        if isinstance(self._storage, SqlEventLogStorage) and keys:
            table = DynamicPartitionsTable
            with self._storage.index_connection() as conn:
                for start in range(0, len(keys), 500):
                    query = select(table.c.partition, table.c.id).where(
                        table.c.partitions_def_name == partitions_def_name,
                        table.c.partition.in_(keys[start : start + 500]),
                    )
                    self._position.update((str(k), int(i)) for k, i in conn.execute(query))
            self._ordered: list[str] | None = None
        else:
            self._ordered = list(instance.get_dynamic_partitions(partitions_def_name))
            self._position = {key: n for n, key in enumerate(self._ordered)}

    def __contains__(self, key: object) -> bool:
        return key in self._position

    def position(self, key: str) -> int:
        return self._position[key]

    def adjacent(self, first: str, second: str) -> bool:
        """True when no other partition lies between ``first`` and ``second`` (in order)."""
        low, high = self._position[first], self._position[second]
        if self._ordered is not None:
            return high == low + 1
        table = DynamicPartitionsTable
        query = (
            select(table.c.id)
            .where(
                table.c.partitions_def_name == self._name,
                table.c.id > low,
                table.c.id < high,
            )
            .limit(1)
        )
        assert isinstance(self._storage, SqlEventLogStorage)
        with self._storage.index_connection() as conn:
            return conn.execute(query).first() is None


class DagsterExportPartitions:
    """The ``ExportPartitions`` port on a Dagster instance's dynamic partitions of one name."""

    def __init__(self, instance: dg.DagsterInstance, partitions_def_name: str) -> None:
        self._instance = instance
        self._name = partitions_def_name

    def existing(self, keys: Sequence[str]) -> set[str]:
        return set(self._instance.get_existing_dynamic_partitions(self._name, list(keys)))

    def add(self, keys: Sequence[str]) -> None:
        self._instance.add_dynamic_partitions(self._name, list(keys))

    def remove(self, key: str) -> None:
        self._instance.delete_dynamic_partition(self._name, key)
