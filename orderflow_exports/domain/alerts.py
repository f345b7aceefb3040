"""Alerts: what a person must be told, and the port that tells them.

An :class:`Alert` is plain data built from the ledger, the request table or a failed run: the
org, the draft(s), the error code and message, and the exact next step an operator types. It
never carries a secret: its sources hold secret *references* at most, and alerts are built only
from error codes, error messages, ids and counts.

Each alert covers one or more *events* (one draft past its ack deadline, one failed run, one
streak of transport failures of an org). An event has a stable key; a notifier channel is told
of each event once (the keys it was told of are recorded by the alert log).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from orderflow_exports.domain.naming import DraftRef

_MESSAGE_LIMIT = 1000
_DRAFTS_IN_TEXT = 20
# Retries go through the running deployment, so the daemon's run retries and the per-host
# concurrency limits apply to them.
RESEND_COMMAND = "orderflow-exports exports retry --org {org} --draft {draft}"


class AlertKind(StrEnum):
    """What happened. Other producers (reconciliation, ...) may add kinds here."""

    RUN_FAILED = "RUN_FAILED"
    ACK_TIMEOUT = "ACK_TIMEOUT"
    ERP_REJECTED = "ERP_REJECTED"
    PENDING_TOO_LONG = "PENDING_TOO_LONG"
    TRANSPORT_FAILING = "TRANSPORT_FAILING"
    NEEDS_PERSON = "NEEDS_PERSON"
    RECONCILIATION = "RECONCILIATION"


@dataclass(frozen=True)
class Alert:
    """One message to a person about one or more events of one kind and (usually) one org.

    ``event_keys`` are the stable keys of the events it covers; ``dedupe_key`` is one key for
    the alert as a whole (the single event's key, or a digest of several).
    """

    kind: AlertKind | str
    title: str
    org_id: str | None
    drafts: tuple[str, ...]
    error_code: str | None
    error_message: str | None
    next_step: str
    event_keys: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.event_keys:
            raise ValueError("an alert covers at least one event")
        if self.error_message is not None and len(self.error_message) > _MESSAGE_LIMIT:
            object.__setattr__(self, "error_message", self.error_message[:_MESSAGE_LIMIT] + "…")

    @property
    def dedupe_key(self) -> str:
        if len(self.event_keys) == 1:
            return self.event_keys[0]
        digest = hashlib.sha256("\n".join(sorted(self.event_keys)).encode()).hexdigest()[:32]
        return f"{self.kind}:{self.org_id or '-'}:{digest}"

    @property
    def subject(self) -> str:
        return f"[orderflow_exports] {self.kind}: {self.title}"

    def as_json(self) -> dict[str, Any]:
        """The webhook payload (and a machine-readable copy for any other channel)."""
        return {
            "source": "orderflow_exports",
            "kind": str(self.kind),
            "title": self.title,
            "org_id": self.org_id,
            "drafts": list(self.drafts),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "next_step": self.next_step,
            "dedupe_key": self.dedupe_key,
            "event_keys": list(self.event_keys),
            "details": self.details,
        }

    def as_text(self) -> str:
        """The e-mail body and log line: readable, every field an operator needs."""
        shown = list(self.drafts[:_DRAFTS_IN_TEXT])
        more = len(self.drafts) - len(shown)
        lines = [
            self.title,
            "",
            f"kind:       {self.kind}",
            f"org:        {self.org_id or '-'}",
            f"drafts:     {', '.join(shown) if shown else '-'}"
            + (f" (and {more} more)" if more > 0 else ""),
            f"error:      {self.error_code or '-'}"
            + (f": {self.error_message}" if self.error_message else ""),
        ]
        lines += [f"{name + ':':<11} {value}" for name, value in self.details.items()]
        lines += ["", "Next step:", f"  {self.next_step}", "", f"alert key: {self.dedupe_key}"]
        return "\n".join(lines) + "\n"

    def as_bytes(self) -> bytes:
        return json.dumps(self.as_json(), ensure_ascii=False, sort_keys=True).encode("utf-8")


class Notifier(Protocol):
    """Tells a person about an alert (webhook, e-mail, log). ``channel`` names it in the log
    of sent alerts, so each channel is told of each event once."""

    @property
    def channel(self) -> str: ...

    def send(self, alert: Alert) -> None:
        """Deliver ``alert``; raise :class:`AlertDeliveryError` when it was not delivered."""
        ...


class AlertDeliveryError(Exception):
    """A channel did not take an alert (unreachable, refused, timed out); it is sent again on
    the next evaluation. The message names the channel and the cause, never a secret."""

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"alert channel {channel}: {reason}")
        self.channel = channel
        self.reason = reason


def resend_step(partition_keys: list[str] | tuple[str, ...]) -> str:
    """The command that re-sends the draft (a FAILED latest attempt needs no force)."""
    if len(partition_keys) == 1:
        org, _, draft = partition_keys[0].partition(":")
        return RESEND_COMMAND.format(org=org, draft=draft)
    orgs = sorted({key.partition(":")[0] for key in partition_keys})
    if len(orgs) == 1:
        return (
            "after checking the ERP, for each draft listed: "
            + RESEND_COMMAND.format(org=orgs[0], draft="<draft_order_id>")
            + f" (or every failed draft of the org: orderflow-exports exports retry --org "
            f"{orgs[0]} --status FAILED)"
        )
    return "after checking the ERP, for each draft listed: " + RESEND_COMMAND.format(
        org="<org_id>", draft="<draft_order_id>"
    )


def partition_keys(refs: list[DraftRef] | tuple[DraftRef, ...]) -> tuple[str, ...]:
    return tuple(ref.partition_key for ref in refs)
