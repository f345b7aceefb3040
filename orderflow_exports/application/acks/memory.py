"""What ack passes remember between passes: bounded, JSON-shaped, kept in the sensor's cursor.

Per org: the entries already reported as skipped, the sizes and times of acks not settled yet,
and a digest of the last failure, so a folder problem is reported when it changes, not on every
pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orderflow_exports.application.acks.results import AckPassSummary

#: Entries per org an ack pass remembers between passes (skips logged, unsettled looks).
MAX_REMEMBERED_PER_ORG = 200


def entry_key(name: str, detail: str) -> str:
    # Hashed: the memory lives in a sensor cursor and must stay small whatever the names are.
    return hashlib.sha256(f"{name}\0{detail}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class OrgMemory:
    """What one org's passes remember: skips already logged, and earlier looks at unsettled acks."""

    skipped: list[str] = field(default_factory=list)
    unsettled: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)
    problem: str | None = None  # a digest of the last pass's failure, to report changes once

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.skipped:
            data["s"] = self.skipped[-MAX_REMEMBERED_PER_ORG:]
        if self.unsettled:
            items = list(self.unsettled.items())[-MAX_REMEMBERED_PER_ORG:]
            data["u"] = {k: [size, mtime] for k, (size, mtime) in items}
        if self.problem:
            data["p"] = self.problem
        return data

    @classmethod
    def from_json(cls, data: Any) -> OrgMemory:
        if not isinstance(data, dict):
            return cls()
        skipped = [k for k in data.get("s", []) if isinstance(k, str)]
        unsettled: dict[str, tuple[int | None, float | None]] = {}
        raw = data.get("u", {})
        if isinstance(raw, dict):
            for key, look in raw.items():
                if isinstance(look, list) and len(look) == 2:
                    unsettled[str(key)] = (look[0], look[1])
        problem = data.get("p") if isinstance(data.get("p"), str) else None
        return cls(skipped[-MAX_REMEMBERED_PER_ORG:], unsettled, problem)


@dataclass
class AckPassMemory:
    """Bounded state carried from one pass to the next (the sensor keeps it in its cursor)."""

    orgs: dict[str, OrgMemory] = field(default_factory=dict)

    def for_org(self, org_id: str) -> OrgMemory:
        return self.orgs.get(org_id, OrgMemory())

    def to_json(self, keep: Iterable[str] | None = None) -> dict[str, Any]:
        wanted = set(keep) if keep is not None else None
        return {
            org: memory.to_json()
            for org, memory in sorted(self.orgs.items())
            if (wanted is None or org in wanted) and memory.to_json()
        }

    @classmethod
    def from_json(cls, data: Any) -> AckPassMemory:
        if not isinstance(data, dict):
            return cls()
        return cls({str(org): OrgMemory.from_json(value) for org, value in data.items()})


def problem_digest(summary: AckPassSummary) -> str | None:
    """A short digest of why the org's pass stopped (None when it did not), to spot changes."""
    if summary.failure is None:
        return None
    return hashlib.sha256(f"{summary.failure_code}|{summary.failure}".encode()).hexdigest()[:12]


def next_memory(summaries: Sequence[AckPassSummary], previous: AckPassMemory) -> AckPassMemory:
    """The memory the next pass starts from: each reached org's new memory, the others' old."""
    memory = AckPassMemory(dict(previous.orgs))
    for summary in summaries:
        if summary.memory is not None:
            summary.memory.problem = problem_digest(summary)
            memory.orgs[summary.org_id] = summary.memory
    return memory
