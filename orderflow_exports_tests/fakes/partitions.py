"""``ExportPartitions`` over a set: the orchestrator's partitions of the export assets."""

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
