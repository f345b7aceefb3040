"""Alerts in Dagster: the ``notifier`` resource, a run-failure sensor and the alert sensor.

Wiring only: conditions and delivery are ``application/alerting.py``, failed runs as alerts
``application/run_failures.py`` over the instance's run history
(``adapters/dagster_instance.py``); the channels are ``adapters/notifiers``.
``export_run_failure_alert_sensor`` tells of a failed ``export_drafts_job`` run as soon as the
daemon sees it; ``orderflow_alerts_sensor`` (every 60 s) tells of the ledger's conditions and
also of failed runs of the last hours, so a run failure whose first delivery failed is told on
a later tick (each event once per channel).
"""

# No ``from __future__ import annotations``: Dagster reads the context and resource annotations.

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dagster_instance import DagsterRunFailures
from orderflow_exports.adapters.notifiers.log import LogNotifier
from orderflow_exports.adapters.notifiers.smtp import SmtpNotifier
from orderflow_exports.adapters.notifiers.webhook import WebhookNotifier
from orderflow_exports.adapters.secrets import SecretScope
from orderflow_exports.adapters.sql.alerts import SqlAlertConditions, SqlAlertLog
from orderflow_exports.application.alerting import (
    AlertSettings,
    DeliveryReport,
    deliver,
    find_alerts,
    flag,
    smtp_recipients,
)
from orderflow_exports.application.run_failures import failed_run_alert, failed_run_alerts
from orderflow_exports.defs.jobs import export_drafts_job
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.defs.settings import resolve_secret_dirs
from orderflow_exports.domain.alerts import Notifier

NOTIFIER_RESOURCE_KEY = "notifier"
# The SMTP password reference is scoped like an org's: env:ORDERFLOW_SECRET_ALERTS_... or a
# file under <secret folder>/alerts/.
ALERTS_SECRET_SCOPE = "alerts"


def _env(name: str) -> str | None:
    value = dg.EnvVar(name).get_value()
    return value if value and value.strip() else None


class AlertsFailed(Exception):
    """At least one channel did not take its alerts; they are sent again on the next tick."""


class NotifierResource(dg.ConfigurableResource):
    """Where alerts go and when a situation is worth one.

    Every channel field falls back to an ``ORDERFLOW_ALERT_*`` environment variable (read when
    the sensor runs, through ``dg.EnvVar``). With neither a webhook nor an SMTP host set, alerts
    go to the sensor's log only.
    """

    webhook_url: str | None = Field(
        default=None,
        description="URL that receives each alert as a JSON POST. Unset: env "
        "ORDERFLOW_ALERT_WEBHOOK_URL. Only its scheme, host and port are ever logged.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time allowed for one webhook POST."
    )
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for e-mail alerts. Unset: env ORDERFLOW_ALERT_SMTP_HOST.",
    )
    smtp_port: int | None = Field(
        default=None, description="SMTP port. Unset: env ORDERFLOW_ALERT_SMTP_PORT, else 25."
    )
    smtp_from: str | None = Field(
        default=None,
        description="Sender address. Unset: env ORDERFLOW_ALERT_SMTP_FROM, else "
        "orderflow-exports@localhost.",
    )
    smtp_to: list[str] | None = Field(
        default=None,
        description="Recipients. Unset: env ORDERFLOW_ALERT_SMTP_TO (comma-separated).",
    )
    smtp_starttls: bool | None = Field(
        default=None,
        description="Upgrade the connection with STARTTLS before login. Unset: env "
        "ORDERFLOW_ALERT_SMTP_STARTTLS (true/false), else false.",
    )
    smtp_ca_file: str | None = Field(
        default=None,
        description="CA certificate(s) that STARTTLS verifies the server against (PEM). Unset: "
        "env ORDERFLOW_ALERT_SMTP_CA_FILE, else the system's CAs. The certificate is always "
        "verified.",
    )
    smtp_username: str | None = Field(
        default=None,
        description="SMTP login user (no login when unset). Unset: env "
        "ORDERFLOW_ALERT_SMTP_USERNAME.",
    )
    smtp_password_ref: str | None = Field(
        default=None,
        description="Reference to the SMTP password, never the password: "
        "env:ORDERFLOW_SECRET_ALERTS_<NAME> or file:<secret folder>/alerts/<name>. Unset: env "
        "ORDERFLOW_ALERT_SMTP_PASSWORD_REF.",
    )
    smtp_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time allowed for one SMTP conversation."
    )
    secret_dirs: list[str] | None = Field(
        default=None,
        description="Secret folders for a file: password reference. Unset: env "
        "ORDERFLOW_SECRET_DIRS, else $DAGSTER_HOME/orderflow/secrets and /run/secrets.",
    )
    pending_limit_minutes: int = Field(
        default=60, ge=1, description="An export PENDING longer than this gets an alert."
    )
    transport_failures_in_a_row: int = Field(
        default=3,
        ge=1,
        description="An org whose latest exports all failed to reach its dropzone, this many "
        "or more, gets an alert (once per streak).",
    )
    max_drafts_per_alert: int = Field(
        default=50, ge=1, description="Drafts of one kind and org named in one alert."
    )
    run_failure_lookback_hours: int = Field(
        default=24,
        ge=1,
        description="The alert sensor also tells of failed export runs this recent that were "
        "not told yet (e.g. the run-failure sensor's delivery failed).",
    )

    tick_time_budget_seconds: float = Field(
        default=35.0,
        gt=0,
        description="The alert sensor starts no new delivery after this long (the daemon "
        "kills an evaluation at 60 s); the rest goes out on the next tick.",
    )

    def settings(self) -> AlertSettings:
        return AlertSettings(
            pending_limit=timedelta(minutes=self.pending_limit_minutes),
            transport_failures_in_a_row=self.transport_failures_in_a_row,
            max_drafts_per_alert=self.max_drafts_per_alert,
        )

    def notifiers(self, log: Any) -> list[Notifier]:
        """The configured channels; the log alone when none is. A half-configured channel
        raises ValueError naming the missing setting."""
        channels: list[Notifier] = []
        url = self.webhook_url or _env("ORDERFLOW_ALERT_WEBHOOK_URL")
        if url:
            channels.append(WebhookNotifier(url, timeout_seconds=self.webhook_timeout_seconds))
        host = self.smtp_host or _env("ORDERFLOW_ALERT_SMTP_HOST")
        if host:
            channels.append(self._smtp(host))
        return channels or [LogNotifier(log)]

    def _smtp(self, host: str) -> SmtpNotifier:
        port = self.smtp_port or int(_env("ORDERFLOW_ALERT_SMTP_PORT") or 25)
        recipients = smtp_recipients(self.smtp_to, _env("ORDERFLOW_ALERT_SMTP_TO"))
        starttls = self.smtp_starttls
        if starttls is None:
            starttls = flag(_env("ORDERFLOW_ALERT_SMTP_STARTTLS"))
        username = self.smtp_username or _env("ORDERFLOW_ALERT_SMTP_USERNAME")
        ref = self.smtp_password_ref or _env("ORDERFLOW_ALERT_SMTP_PASSWORD_REF")
        password = None
        if ref:
            scope = SecretScope(resolve_secret_dirs(self.secret_dirs))
            scope.check(ref, ALERTS_SECRET_SCOPE)  # a malformed reference fails at once

            def password() -> str:
                return scope.resolve(ref, ALERTS_SECRET_SCOPE)

        return SmtpNotifier(
            host=host,
            port=port,
            sender=self.smtp_from
            or _env("ORDERFLOW_ALERT_SMTP_FROM")
            or "orderflow-exports@localhost",
            recipients=recipients,
            starttls=starttls,
            username=username,
            password=password,
            timeout_seconds=self.smtp_timeout_seconds,
            ca_file=self.smtp_ca_file or _env("ORDERFLOW_ALERT_SMTP_CA_FILE"),
        )


def _report(log: Any, report: DeliveryReport) -> str:
    for failure in report.failures:
        log.error(f"alert not delivered, sent again on the next tick: {failure}")
    summary = report.summary()
    if report.failures:
        raise AlertsFailed(summary)
    log.info(summary)
    return summary


def _now() -> datetime:
    return datetime.now(UTC)


@dg.run_failure_sensor(
    name="export_run_failure_alert_sensor",
    monitored_jobs=[export_drafts_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells the notifier's channels of each failed export_drafts_job run.",
)
def export_run_failure_alert_sensor(
    context: dg.RunFailureSensorContext,
    notifier: NotifierResource,
    database: DatabaseResource,
) -> None:
    alert = failed_run_alert(DagsterRunFailures(context.instance).failed_run(context.dagster_run))
    report = deliver(
        [alert],
        notifier.notifiers(context.log),
        SqlAlertLog(database.engine),
        now=_now(),
        max_drafts_per_alert=notifier.max_drafts_per_alert,
    )
    _report(context.log, report)


@dg.sensor(
    name="orderflow_alerts_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells the notifier's channels of drafts past their ack deadline or rejected, "
    "exports PENDING too long, orgs whose dropzone keeps failing, drafts that need a person, "
    "and failed export runs not told yet. Each event once per channel.",
)
def orderflow_alerts_sensor(
    context: dg.SensorEvaluationContext,
    notifier: NotifierResource,
    database: DatabaseResource,
) -> dg.SkipReason:
    now = _now()
    engine = database.engine
    alerts = find_alerts(SqlAlertConditions(engine), notifier.settings(), now=now)
    alerts += failed_run_alerts(
        DagsterRunFailures(context.instance),
        export_drafts_job.name,
        since=now - timedelta(hours=notifier.run_failure_lookback_hours),
    )
    report = deliver(
        alerts,
        notifier.notifiers(context.log),
        SqlAlertLog(engine),
        now=now,
        max_drafts_per_alert=notifier.max_drafts_per_alert,
        time_budget_seconds=notifier.tick_time_budget_seconds,
    )
    # No run is ever requested: the tick list shows this line for every evaluation.
    return dg.SkipReason(f"{len(alerts)} open event(s); " + _report(context.log, report))


alert_sensors = [export_run_failure_alert_sensor, orderflow_alerts_sensor]
alert_resources = {NOTIFIER_RESOURCE_KEY: NotifierResource()}
