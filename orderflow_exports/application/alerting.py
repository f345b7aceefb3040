"""Which situations need a person, and telling each notifier channel of each one once.

Conditions come from the ledger and the request table (:class:`AlertConditions`); failed runs
come from the run history (``application/run_failures.py``). Every situation is an
*event* with a stable key, e.g. ``ACK_TIMEOUT:<export_id>`` or
``TRANSPORT_FAILING:<org>:<first export of the streak>``: a new attempt, a new streak or a new
"needs a person" mark is a new event; the same one seen again on the next tick is not.

Delivery is **send, then record**: an event is recorded for a channel only after that channel
took it. A crash (or a failed database write) between the two makes the alert go out twice;
recording first would lose it instead, and a lost alert is a draft nobody acts on, while a
duplicate is only noise (it carries the same ``dedupe_key``/``Idempotency-Key``). A channel that
fails records nothing, so its alerts are sent again on the next tick, and the other channels are
still served.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from orderflow_exports.domain.ack_decisions import ACK_TIMEOUT, ERP_REJECTED
from orderflow_exports.domain.alerts import (
    Alert,
    AlertDeliveryError,
    AlertKind,
    Notifier,
    resend_step,
)
from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.export_requests import ExportRequest
from orderflow_exports.domain.reconciliation import Finding
from orderflow_exports.domain.records import ExportRecord

# Failures of the org's dropzone itself (not of one draft's data).
TRANSPORT_FAILURE_CODES = frozenset(
    {
        ErrorCode.CONNECTION,
        ErrorCode.TIMEOUT,
        ErrorCode.AUTH,
        ErrorCode.HOST_KEY,
        ErrorCode.PERMISSION,
        ErrorCode.DISK_FULL,
        ErrorCode.SIZE_MISMATCH,
        ErrorCode.CONFIG,
        ErrorCode.IO,
    }
)
# Kinds about single drafts: several of one org found in one evaluation go out as one alert.
_PER_DRAFT_KINDS = frozenset(
    {
        AlertKind.ACK_TIMEOUT,
        AlertKind.ERP_REJECTED,
        AlertKind.PENDING_TOO_LONG,
        AlertKind.NEEDS_PERSON,
    }
)


class AlertConditions(Protocol):
    """Read-only queries over erp_export / erp_export_request."""

    def latest_failed(self, error_codes: Iterable[str], limit: int) -> list[ExportRecord]: ...

    def pending_since_before(self, cutoff: datetime, limit: int) -> list[ExportRecord]: ...

    def needing_person(self, limit: int) -> list[ExportRequest]: ...

    def failure_streaks(
        self, failure_codes: Iterable[str], at_least: int
    ) -> list[tuple[ExportRecord, ExportRecord, int]]: ...


class AlertLog(Protocol):
    """Which events each channel was told of (survives restarts: a database table)."""

    def already_sent(self, channel: str, event_keys: Sequence[str]) -> set[str]: ...

    def record_sent(
        self, channel: str, events: Sequence[tuple[str, str, str | None]], *, at: datetime
    ) -> None: ...


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds of the alert conditions."""

    pending_limit: timedelta = timedelta(hours=1)
    transport_failures_in_a_row: int = 3
    max_rows_per_condition: int = 500
    max_drafts_per_alert: int = 50


def smtp_recipients(configured: Sequence[str] | None, listed: str | None) -> list[str]:
    """The e-mail channel's recipients: ``configured`` when it names any, else the
    comma-separated ``listed`` (``ORDERFLOW_ALERT_SMTP_TO``) without blanks.

    Raises ValueError naming both settings when neither gives a recipient.
    """
    recipients = list(configured or ()) or [
        r.strip() for r in (listed or "").split(",") if r.strip()
    ]
    if not recipients:
        raise ValueError(
            "SMTP alerts are configured (smtp_host) but have no recipient: set smtp_to or "
            "ORDERFLOW_ALERT_SMTP_TO"
        )
    return recipients


def flag(text: str | None, *, default: bool = False) -> bool:
    """A true/false setting spelled in an environment variable (any case; only "true" is
    true); ``default`` when unset."""
    return default if text is None else text.lower() == "true"


# --- building alerts -----------------------------------------------------------------------


def _export_alert(kind: AlertKind, record: ExportRecord, title: str, next_step: str) -> Alert:
    return Alert(
        kind=kind,
        title=title,
        org_id=record.org_id,
        drafts=(record.ref.partition_key,),
        error_code=record.error_code,
        error_message=record.error_message,
        next_step=next_step,
        event_keys=(f"{kind}:{record.id}",),
        details={"export_id": record.id, "attempt": record.attempt, "file": record.filename},
    )


def ack_timeout_alert(record: ExportRecord) -> Alert:
    key = record.ref.partition_key
    return _export_alert(
        AlertKind.ACK_TIMEOUT,
        record,
        f"{key}: no ack from the ERP before the deadline",
        f"The ERP may hold the order: look for export {record.id} / file {record.filename} in "
        f"the ERP and in org {record.org_id}'s <ack_path>/error/ "
        f"(`orderflow-exports acks errors --org {record.org_id}`); only if it is not there, "
        f"re-send: {resend_step([key])}",
    )


def erp_rejected_alert(record: ExportRecord) -> Alert:
    key = record.ref.partition_key
    return _export_alert(
        AlertKind.ERP_REJECTED,
        record,
        f"{key}: the ERP rejected the order",
        f"Fix draft {record.draft_order_id} in OrderFlow as the ERP's message says, then "
        f"re-send: {resend_step([key])}",
    )


def pending_alert(record: ExportRecord, now: datetime) -> Alert:
    key = record.ref.partition_key
    alert = _export_alert(
        AlertKind.PENDING_TOO_LONG,
        record,
        f"{key}: export PENDING since {record.created_at.isoformat()}",
        f"Check Dagster run {record.dagster_run_id or '-'} (UI: Runs); if it is no longer "
        f"active, the next run of the draft settles the PENDING row against the dropzone: "
        f"{resend_step([key])} (`orderflow-exports exports list --org {record.org_id} "
        f"--status PENDING` lists them)",
    )
    alert.details["pending_minutes"] = int((now - record.created_at).total_seconds() // 60)
    alert.details["dagster_run_id"] = record.dagster_run_id
    return alert


def needs_person_alert(request: ExportRequest) -> Alert:
    key = request.ref.partition_key
    since = request.needs_person_since
    return Alert(
        kind=AlertKind.NEEDS_PERSON,
        title=f"{key}: no longer retried automatically ({request.redrive_count} re-drives)",
        org_id=request.org_id,
        drafts=(key,),
        error_code=str(request.last_outcome) if request.last_outcome else None,
        error_message=request.last_reason,
        next_step=f"`orderflow-exports exports attention --org {request.org_id}` shows the "
        f"last reason; fix it, then re-send: {resend_step([key])}",
        event_keys=(f"{AlertKind.NEEDS_PERSON}:{key}:{since.isoformat() if since else '-'}",),
        details={"redrive_count": request.redrive_count},
    )


def transport_alert(first: ExportRecord, last: ExportRecord, count: int) -> Alert:
    org = last.org_id
    return Alert(
        kind=AlertKind.TRANSPORT_FAILING,
        title=f"org {org}: {count} exports in a row failed to reach its dropzone",
        org_id=org,
        drafts=(last.ref.partition_key,),
        error_code=last.error_code,
        error_message=last.error_message,
        next_step=f"Fix org {org}'s dropzone or connector (`orderflow-exports connectors list`; "
        f"change it with `orderflow-exports connectors set --org {org} ...`); transient failures "
        f"are re-driven automatically, `orderflow-exports exports attention --org {org}` lists "
        "the drafts that need a re-send",
        event_keys=(f"{AlertKind.TRANSPORT_FAILING}:{org}:{first.id}",),
        details={"failures_in_a_row": count, "first_failed_at": first.created_at.isoformat()},
    )


def find_alerts(
    conditions: AlertConditions, settings: AlertSettings, *, now: datetime
) -> list[Alert]:
    """One alert per event that currently needs a person (already-told ones included: the
    alert log filters those per channel)."""
    limit = settings.max_rows_per_condition
    alerts: list[Alert] = []
    for record in conditions.latest_failed([ACK_TIMEOUT, ERP_REJECTED], limit):
        if record.error_code == ACK_TIMEOUT:
            alerts.append(ack_timeout_alert(record))
        else:
            alerts.append(erp_rejected_alert(record))
    cutoff = now - settings.pending_limit
    alerts += [pending_alert(r, now) for r in conditions.pending_since_before(cutoff, limit)]
    alerts += [
        transport_alert(first, last, count)
        for first, last, count in conditions.failure_streaks(
            TRANSPORT_FAILURE_CODES, settings.transport_failures_in_a_row
        )
    ]
    alerts += [needs_person_alert(r) for r in conditions.needing_person(limit)]
    return alerts


def reconciliation_alerts(findings: Sequence[Finding]) -> list[Alert]:
    """One alert per reconciliation finding; its event is the finding's class and subject, so
    a mismatch that stays (found again every day) is told once per channel."""
    return [
        Alert(
            kind=AlertKind.RECONCILIATION,
            title=f"org {finding.org_id}: {finding.kind}: {finding.subject}",
            org_id=finding.org_id,
            drafts=(finding.partition_key,) if finding.partition_key else (),
            error_code=finding.kind,
            error_message=finding.detail or None,
            next_step=finding.next_step,
            event_keys=(
                f"{AlertKind.RECONCILIATION}:{finding.org_id}:{finding.kind}:{finding.subject}",
            ),
            details={
                "subject": finding.subject,
                **({"export_id": finding.export_id} if finding.export_id else {}),
                **({"fixed": finding.fixed} if finding.fixed else {}),
            },
        )
        for finding in findings
    ]


def _merge_reconciliation(org_id: str | None, chunk: Sequence[Alert]) -> Alert:
    steps = list(dict.fromkeys(a.next_step for a in chunk))
    return Alert(
        kind=AlertKind.RECONCILIATION,
        title=f"org {org_id}: {len(chunk)} reconciliation finding(s)",
        org_id=org_id,
        drafts=tuple(d for a in chunk for d in a.drafts),
        error_code=chunk[0].error_code if len({a.error_code for a in chunk}) == 1 else "various",
        error_message=None,
        next_step=" | ".join(steps[:5])
        + (f" (and {len(steps) - 5} more)" if len(steps) > 5 else ""),
        event_keys=tuple(k for a in chunk for k in a.event_keys),
        details={
            "findings": {
                str(a.details.get("subject")): f"{a.error_code}: {a.error_message or ''} "
                f"→ {a.next_step}"
                for a in chunk
            }
        },
    )


def merge_alerts(alerts: Sequence[Alert], max_drafts: int) -> list[Alert]:
    """Per-draft alerts of one kind and org become one alert of up to ``max_drafts`` drafts;
    reconciliation findings of one org likewise become one alert."""
    merged: list[Alert] = []
    groups: dict[tuple[str, str | None], list[Alert]] = defaultdict(list)
    for alert in alerts:
        if alert.kind in _PER_DRAFT_KINDS or alert.kind == AlertKind.RECONCILIATION:
            groups[(str(alert.kind), alert.org_id)].append(alert)
        else:
            merged.append(alert)
    for (kind, org_id), members in groups.items():
        for start in range(0, len(members), max_drafts):
            chunk = members[start : start + max_drafts]
            if len(chunk) == 1:
                merged.append(chunk[0])
                continue
            if kind == AlertKind.RECONCILIATION:
                merged.append(_merge_reconciliation(org_id, chunk))
                continue
            drafts = tuple(d for a in chunk for d in a.drafts)
            codes = {a.error_code for a in chunk}
            messages = {a.error_message for a in chunk}
            merged.append(
                Alert(
                    kind=kind,
                    title=f"org {org_id}: {len(chunk)} drafts {_KIND_PHRASES[kind]}",
                    org_id=org_id,
                    drafts=drafts,
                    error_code=codes.pop() if len(codes) == 1 else "various",
                    error_message=messages.pop() if len(messages) == 1 else None,
                    next_step=_GROUP_STEPS[kind].replace("{org}", str(org_id)),
                    event_keys=tuple(k for a in chunk for k in a.event_keys),
                    details={
                        "per_draft": {
                            a.drafts[0]: f"{a.error_code or '-'}: {a.error_message or ''}"
                            for a in chunk
                        }
                    },
                )
            )
    return merged


_KIND_PHRASES: dict[str, str] = {
    AlertKind.ACK_TIMEOUT: "got no ack before the deadline",
    AlertKind.ERP_REJECTED: "were rejected by the ERP",
    AlertKind.PENDING_TOO_LONG: "are PENDING too long",
    AlertKind.NEEDS_PERSON: "are no longer retried automatically",
}
_GROUP_STEPS: dict[str, str] = {
    AlertKind.ACK_TIMEOUT: "`orderflow-exports exports attention --org {org}`: for each draft, "
    "look for its export in the ERP and `orderflow-exports acks errors --org {org}`; re-send "
    "only those the ERP does not hold: " + resend_step(["<org_id>:<draft_order_id>"]),
    AlertKind.ERP_REJECTED: "`orderflow-exports exports attention --org {org}` quotes each "
    "ERP message; fix the drafts, then re-send each: " + resend_step(["<org_id>:<draft_order_id>"]),
    AlertKind.PENDING_TOO_LONG: "`orderflow-exports exports list --org {org} --status PENDING`; "
    "check their runs in the Dagster UI; the next run of a draft settles its PENDING row: "
    + resend_step(["<org_id>:<draft_order_id>"]),
    AlertKind.NEEDS_PERSON: "`orderflow-exports exports attention --org {org}` shows each last "
    "reason; fix it, then re-send each: " + resend_step(["<org_id>:<draft_order_id>"]),
}


@dataclass
class DeliveryReport:
    """What one evaluation told, per channel, and what failed (to be tried again)."""

    sent: dict[str, list[str]] = field(default_factory=dict)
    already_sent: int = 0
    deferred: int = 0
    failures: list[AlertDeliveryError] = field(default_factory=list)

    @property
    def sent_count(self) -> int:
        return sum(len(keys) for keys in self.sent.values())

    def summary(self) -> str:
        told = ", ".join(f"{c}: {len(k)} alert(s)" for c, k in self.sent.items() if k) or "none"
        text = f"sent {told}; {self.already_sent} event(s) already told"
        if self.deferred:
            text += f"; {self.deferred} alert(s) left for the next tick (time budget)"
        if self.failures:
            text += "; FAILED: " + "; ".join(str(f) for f in self.failures)
        return text


def deliver(
    alerts: Sequence[Alert],
    notifiers: Sequence[Notifier],
    log: AlertLog,
    *,
    now: datetime,
    max_drafts_per_alert: int = 50,
    time_budget_seconds: float | None = None,
) -> DeliveryReport:
    """Tell each channel the events it was not told of yet: send, then record.

    No alert is started after ``time_budget_seconds`` (a sensor must end within the daemon's
    evaluation timeout); what is left counts in ``deferred`` and goes out on the next tick.
    """
    report = DeliveryReport()
    deadline = None if time_budget_seconds is None else time.monotonic() + time_budget_seconds
    for notifier in notifiers:
        channel = notifier.channel
        keys = [k for a in alerts for k in a.event_keys]
        told = log.already_sent(channel, keys)
        report.already_sent += len(told)
        fresh = [a for a in alerts if not set(a.event_keys) <= told]
        sent_keys: list[str] = []
        for alert in merge_alerts(fresh, max_drafts_per_alert):
            if deadline is not None and time.monotonic() >= deadline:
                report.deferred += 1
                continue
            try:
                notifier.send(alert)
            except AlertDeliveryError as exc:
                # The rest of this channel's alerts would most likely fail the same way.
                report.failures.append(exc)
                break
            log.record_sent(
                channel,
                [(k, str(alert.kind), alert.org_id) for k in alert.event_keys],
                at=now,
            )
            sent_keys.append(alert.dedupe_key)
        report.sent[channel] = sent_keys
    return report
