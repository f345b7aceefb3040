"""The orchestrator's partitions of the export assets: ``ExportPartitions`` over a set,
``KnownPartitions`` over a list in the order the partitions were added."""

from __future__ import annotations

from collections.abc import Sequence


class FakeExportPartitions:
    """The partition keys in a set; ``removed`` and ``added`` record every change in order."""

    def __init__(self, *keys: str) -> None:
        self.keys: set[str] = set(keys)
        self.removed: list[str] = []
        self.added: list[str] = []

    def existing(self, keys: Sequence[str]) -> set[str]:
        return self.keys.intersection(keys)

    def add(self, keys: Sequence[str]) -> None:
        self.added.extend(keys)
        self.keys.update(keys)

    def remove(self, key: str) -> None:
        self.removed.append(key)
        self.keys.discard(key)


class FakeKnownPartitions:
    """``KnownPartitions`` over every partition key in the order added; ``asked`` holds the keys
    each tick asked about, as the real adapter is asked about a tick's keys only."""

    def __init__(self, *keys: str) -> None:
        self.keys: list[str] = list(keys)
        self.asked: list[list[str]] = []

    def known(self, keys: Sequence[str]) -> FakeKnownPartitions:
        """This view after a tick asked about ``keys`` (a ``known_partitions`` callable)."""
        self.asked.append(list(keys))
        return self

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def position(self, key: str) -> int:
        return self.keys.index(key)

    def adjacent(self, first: str, second: str) -> bool:
        return self.position(second) == self.position(first) + 1
