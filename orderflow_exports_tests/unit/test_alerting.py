"""Alert building, grouping and send-then-record delivery, on in-memory ports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from orderflow_exports.application.alerting import (
    deliver,
    erp_rejected_alert,
    flag,
    merge_alerts,
    smtp_recipients,
)
from orderflow_exports.application.run_failures import run_failed_alert
from orderflow_exports.domain.alerts import Alert, AlertDeliveryError, AlertKind
from orderflow_exports.domain.records import ExportRecord
from orderflow_exports.domain.status import ExportStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _rejected(draft: str, message: str = "blocked") -> ExportRecord:
    return ExportRecord(
        id=f"id-{draft}",
        org_id="acme",
        draft_order_id=draft,
        connector_type="DROPZONE_JSON_V1",
        attempt=1,
        status=ExportStatus.FAILED,
        filename=f"acme_{draft}.json",
        dropzone_path="/in/x.json",
        storage_key="k",
        content_sha256="0" * 64,
        byte_size=1,
        line_count=1,
        forced=False,
        erp_order_number=None,
        error_code="ERP_REJECTED",
        error_message=message,
        dagster_run_id=None,
        created_at=NOW - timedelta(hours=1),
        sent_at=NOW - timedelta(hours=1),
        acked_at=None,
        updated_at=NOW,
    )


class MemoryLog:
    def __init__(self) -> None:
        self.rows: dict[str, set[str]] = {}

    def already_sent(self, channel: str, event_keys: Sequence[str]) -> set[str]:
        return self.rows.get(channel, set()) & set(event_keys)

    def record_sent(
        self, channel: str, events: Sequence[tuple[str, str, str | None]], *, at: datetime
    ) -> None:
        self.rows.setdefault(channel, set()).update(key for key, _, _ in events)


class Recorder:
    def __init__(self, channel: str, fail_after: int | None = None) -> None:
        self.channel = channel
        self.sent: list[Alert] = []
        self.fail_after = fail_after

    def send(self, alert: Alert) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise AlertDeliveryError(self.channel, "connection refused")
        self.sent.append(alert)


def test_alert_text_and_json_carry_org_drafts_error_and_next_step() -> None:
    alert = erp_rejected_alert(_rejected("D-1", "customer 4711 is blocked"))
    payload = alert.as_json()
    assert payload["kind"] == "ERP_REJECTED" and payload["drafts"] == ["acme:D-1"]
    assert payload["dedupe_key"] == "ERP_REJECTED:id-D-1"
    assert "orderflow-exports exports retry --org acme --draft D-1" in alert.next_step
    text = alert.as_text()
    assert "customer 4711 is blocked" in text and "Next step:" in text


def test_merge_groups_per_kind_and_org_with_a_stable_key() -> None:
    alerts = [erp_rejected_alert(_rejected(f"D-{n}")) for n in range(3)]
    run = run_failed_alert(run_id="r1", job_name="export_drafts_job", partition_keys=[], error=None)
    merged = merge_alerts([*alerts, run], max_drafts=10)
    assert len(merged) == 2
    group = next(a for a in merged if a.kind == AlertKind.ERP_REJECTED)
    assert group.drafts == ("acme:D-0", "acme:D-1", "acme:D-2")
    assert len(group.event_keys) == 3
    again = merge_alerts(list(reversed(alerts)), max_drafts=10)[0]
    assert again.dedupe_key == group.dedupe_key  # the order events were found in does not matter
    assert "{" not in group.next_step  # no unfilled template


def test_failed_channel_records_nothing_and_others_are_served() -> None:
    log = MemoryLog()
    good, bad = Recorder("smtp"), Recorder("webhook", fail_after=0)
    alerts = [erp_rejected_alert(_rejected("D-1")), erp_rejected_alert(_rejected("D-2", "x"))]
    report = deliver(alerts, [bad, good], log, now=NOW, max_drafts_per_alert=1)
    assert [str(f) for f in report.failures] == ["alert channel webhook: connection refused"]
    assert len(good.sent) == 2 and "webhook" not in log.rows
    bad.fail_after = None
    deliver(alerts, [bad, good], log, now=NOW, max_drafts_per_alert=1)
    assert len(bad.sent) == 2 and len(good.sent) == 2


def test_partial_failure_keeps_what_was_delivered() -> None:
    log = MemoryLog()
    flaky = Recorder("webhook", fail_after=1)
    alerts = [erp_rejected_alert(_rejected(f"D-{n}", str(n))) for n in range(3)]
    deliver(alerts, [flaky], log, now=NOW, max_drafts_per_alert=1)
    assert len(flaky.sent) == 1 and len(log.rows["webhook"]) == 1
    flaky.fail_after = None
    deliver(alerts, [flaky], log, now=NOW, max_drafts_per_alert=1)
    assert sorted(a.drafts[0] for a in flaky.sent) == ["acme:D-0", "acme:D-1", "acme:D-2"]


def test_alert_needs_an_event() -> None:
    with pytest.raises(ValueError):
        Alert(
            kind=AlertKind.RUN_FAILED,
            title="t",
            org_id=None,
            drafts=(),
            error_code=None,
            error_message=None,
            next_step="-",
            event_keys=(),
        )


def test_time_budget_defers_the_rest_to_the_next_tick() -> None:
    log = MemoryLog()
    channel = Recorder("webhook")
    alerts = [erp_rejected_alert(_rejected(f"D-{n}", str(n))) for n in range(3)]
    report = deliver(alerts, [channel], log, now=NOW, max_drafts_per_alert=1, time_budget_seconds=0)
    assert report.deferred == 3 and not channel.sent and not log.rows
    assert "3 alert(s) left for the next tick" in report.summary()
    deliver(alerts, [channel], log, now=NOW, max_drafts_per_alert=1)
    assert len(channel.sent) == 3


def test_smtp_recipients_come_from_the_config_else_the_comma_separated_list() -> None:
    assert smtp_recipients(["ops@example.com"], "x@example.com") == ["ops@example.com"]
    assert smtp_recipients(None, " a@example.com, ,b@example.com ,") == [
        "a@example.com",
        "b@example.com",
    ]
    assert smtp_recipients([], "a@example.com") == ["a@example.com"]
    with pytest.raises(ValueError, match="set smtp_to or ORDERFLOW_ALERT_SMTP_TO"):
        smtp_recipients(None, " , ")


def test_flag_is_true_only_when_spelled_true() -> None:
    assert flag("TRUE") and flag("true")
    assert not flag("yes") and not flag("false") and not flag(None)
    assert flag(None, default=True)
