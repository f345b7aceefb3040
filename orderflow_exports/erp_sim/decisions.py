"""The simulated ERP's pure part: what it answers to an order, and the ack file it writes.

No I/O here: the decision is a function of the seed and the export id, so a run can be
replayed and tested without folders or servers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

ACK_SUFFIX = ".ack.json"


class Verdict(StrEnum):
    """What the simulated ERP does with an order."""

    ACCEPT = "accept"
    REJECT = "reject"
    SILENT = "silent"


@dataclass(frozen=True)
class Policy:
    """How often the simulated ERP rejects or stays silent, and how long it takes to answer.

    ``reject_drafts`` are always rejected (the demo uses it for one predictable rejection);
    the other orders are decided by ratio from a hash of ``seed`` and the export id.
    """

    reject_ratio: float = 0.0
    silent_ratio: float = 0.0
    delay_seconds: float = 0.0
    seed: int = 0
    reject_drafts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("reject_ratio", "silent_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.reject_ratio + self.silent_ratio > 1.0:
            raise ValueError("reject_ratio + silent_ratio must not exceed 1")
        if self.delay_seconds < 0:
            raise ValueError(f"delay must not be negative, got {self.delay_seconds}")


@dataclass(frozen=True)
class Decision:
    """The verdict for one export, with the ERP order number or the rejection reason."""

    export_id: str
    verdict: Verdict
    erp_order_number: str | None = None
    message: str | None = None
    errors: tuple[dict[str, Any], ...] = ()


def _unit(seed: int, export_id: str) -> tuple[float, int]:
    digest = hashlib.sha256(f"{seed}:{export_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:12], "big")


def decide(policy: Policy, export_id: str, draft_order_id: str | None = None) -> Decision:
    """The verdict for a valid order: same seed and export id, same answer."""
    unit, number = _unit(policy.seed, export_id)
    if draft_order_id is not None and draft_order_id in policy.reject_drafts:
        unit = 0.0
        forced = True
    else:
        forced = False
    if forced or unit < policy.reject_ratio:
        return Decision(
            export_id,
            Verdict.REJECT,
            message="order refused by the simulated ERP",
            errors=(
                {
                    "code": "CUSTOMER_BLOCKED",
                    "message": "customer account blocked for ordering",
                    "line_no": None,
                },
            ),
        )
    if unit < policy.reject_ratio + policy.silent_ratio:
        return Decision(export_id, Verdict.SILENT)
    return Decision(export_id, Verdict.ACCEPT, erp_order_number=f"SO-{number % 10**8:08d}")


def invalid_order(export_id: str, problems: list[tuple[str, int | None]]) -> Decision:
    """The rejection of an order that does not match the published schema."""
    errors = tuple(
        {"code": "SCHEMA", "message": text, "line_no": line_no} for text, line_no in problems
    )
    return Decision(
        export_id,
        Verdict.REJECT,
        message=f"order does not match orderflow_export_json_v1: {problems[0][0]}",
        errors=errors,
    )


def ack_name(export_id: str) -> str:
    """The ack file's name: ends in ``.json`` as the contract requires, one per export."""
    return f"{export_id}{ACK_SUFFIX}"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ack_document(decision: Decision, org_id: str, received_at: datetime) -> bytes:
    """The ack file's bytes as the ERP writes them; a silent verdict has none (ValueError)."""
    if decision.verdict is Verdict.SILENT:
        raise ValueError("a silent verdict has no ack")
    accepted = decision.verdict is Verdict.ACCEPT
    body = {
        "export_id": decision.export_id,
        "org_id": org_id,
        "status": "ACKED" if accepted else "FAILED",
        "erp_order_number": decision.erp_order_number if accepted else None,
        "message": decision.message,
        "errors": list(decision.errors),
        "received_at": _rfc3339(received_at),
    }
    return (json.dumps(body, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
