"""Alerts end to end: ledger conditions and failed runs reach a real webhook (threaded HTTP
server) and a real SMTP server (aiosmtpd), each event exactly once per channel."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, select

from orderflow_exports.adapters.sql.alerts import erp_alert
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.export_requests import SqlExportRequests
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.defs.alerts import (
    AlertsFailed,
    NotifierResource,
    export_run_failure_alert_sensor,
    orderflow_alerts_sensor,
)
from orderflow_exports.defs.resources import DatabaseResource
from orderflow_exports.domain.alerts import AlertKind
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef, export_filename
from orderflow_exports.domain.records import ConnectorConfig, NewExport
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.alert_servers import (
    SMTP_USER,
    SmtpReceiver,
    WebhookReceiver,
    smtp_server,
    webhook,
)

__all__ = ["smtp_server", "webhook"]  # fixtures

NOW = datetime.now(UTC)
SFTP_SECRET = "sftp-pass-Zq81-never-in-alerts"
FILE_SECRET = "file-key-Hx42-never-in-alerts"
SMTP_SECRET = "smtp-pass-Wv77-never-in-alerts"
SECRETS = (SFTP_SECRET, FILE_SECRET, SMTP_SECRET)


def _export(
    ledger: SqlExportLedger,
    org: str,
    draft: str,
    *,
    created: datetime,
    attempt: int = 1,
    sent: bool = False,
    fail: tuple[str, str] | None = None,
    run_id: str | None = None,
) -> str:
    export_id = str(uuid.uuid4())
    ref = DraftRef(org, draft)
    ledger.create_pending(
        NewExport(
            id=export_id,
            ref=ref,
            attempt=attempt,
            filename=export_filename(ref, created, export_id),
            dropzone_path=f"/{org}/orders/x.json",
            storage_key=f"exports/{org}/{draft}/{export_id}.json",
            content_sha256="0" * 64,
            byte_size=100,
            line_count=1,
            forced=False,
            dagster_run_id=run_id,
            created_at=created,
        )
    )
    if sent:
        assert ledger.mark_sent(export_id, at=created + timedelta(seconds=1))
    if fail is not None:
        expected = ExportStatus.SENT if sent else ExportStatus.PENDING
        code, message = fail
        assert ledger.mark_failed(
            export_id, expected=expected, code=code, message=message, at=created
        )
    return export_id


@pytest.fixture
def secrets_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Connector secrets (env: and file:) and the SMTP password (env:), all resolvable."""
    secret_dir = tmp_path / "secrets"
    (secret_dir / "gamma").mkdir(parents=True)
    key = secret_dir / "gamma" / "sftp_key"
    key.write_text(FILE_SECRET + "\n")
    os.chmod(key, 0o600)
    monkeypatch.setenv("ORDERFLOW_SECRET_DIRS", str(secret_dir))
    monkeypatch.setenv("ORDERFLOW_SECRET_ACME_SFTP_PASSWORD", SFTP_SECRET)
    monkeypatch.setenv("ORDERFLOW_SECRET_ALERTS_SMTP_PASSWORD", SMTP_SECRET)
    return secret_dir


@pytest.fixture
def conditions(engine: Engine, secrets_env: Path) -> dict[str, str]:
    """One event of every ledger kind: ack timeout, ERP rejection, PENDING too long, a
    transport-failure streak (3 in a row), a draft that needs a person."""
    configs = SqlConnectorConfigs(engine)
    for org, ref in (
        ("acme", "env:ORDERFLOW_SECRET_ACME_SFTP_PASSWORD"),
        ("gamma", f"file:{secrets_env}/gamma/sftp_key"),
    ):
        configs.upsert(
            ConnectorConfig(
                org_id=org,
                transport="sftp",
                host=f"erp.{org}.example",
                port=22,
                username="orderflow",
                host_key="SHA256:" + "A" * 43,
                password_ref=ref,
                export_path="/inbound",
                ack_path="/acks",
            )
        )
    ledger = SqlExportLedger(engine)
    ids = {
        "ack_timeout": _export(
            ledger,
            "acme",
            "D-1",
            created=NOW - timedelta(days=2),
            sent=True,
            fail=("ACK_TIMEOUT", "no ack within 86400 s of sending"),
        ),
        "rejected": _export(
            ledger,
            "acme",
            "D-2",
            created=NOW - timedelta(hours=3),
            sent=True,
            fail=("ERP_REJECTED", "customer 4711 is blocked"),
        ),
        "pending": _export(
            ledger, "acme", "D-3", created=NOW - timedelta(hours=2), run_id="run-abc"
        ),
    }
    for n in range(3):
        export_id = _export(
            ledger,
            "gamma",
            f"G-{n}",
            created=NOW - timedelta(minutes=30 - n),
            fail=(
                "AUTH",
                f"authentication with secret 'file:{secrets_env}/gamma/sftp_key' was refused",
            ),
        )
        ids.setdefault("streak_first", export_id)
    SqlExportRequests(engine).record_outcome(
        DraftRef("acme", "D-4"),
        RequestOutcome.PERMANENT,
        "[HOST_KEY] host key of erp.acme.example does not match",
        at=NOW - timedelta(minutes=5),
    )
    return ids


def _resources(
    database_url: str, webhook_url: str, smtp: SmtpReceiver, **extra: object
) -> dict[str, object]:
    notifier = NotifierResource(
        webhook_url=webhook_url,
        webhook_timeout_seconds=5,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_to=["ops@example.test"],
        smtp_username=SMTP_USER,
        smtp_password_ref="env:ORDERFLOW_SECRET_ALERTS_SMTP_PASSWORD",
        smtp_timeout_seconds=5,
        **extra,  # type: ignore[arg-type]
    )
    return {"notifier": notifier, "database": DatabaseResource(url=database_url)}


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _tick(instance: dg.DagsterInstance, resources: dict[str, object]) -> dg.SkipReason:
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = orderflow_alerts_sensor(context)
    assert isinstance(result, dg.SkipReason)
    return result


def _kinds_in_posts(posts: list[dict[str, object]]) -> list[str]:
    return sorted(str(p["kind"]) for p in posts)


def _sent_rows(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(r.event_key, r.channel) for r in conn.execute(select(erp_alert))}


LEDGER_KINDS = sorted(
    [
        AlertKind.ACK_TIMEOUT,
        AlertKind.ERP_REJECTED,
        AlertKind.PENDING_TOO_LONG,
        AlertKind.TRANSPORT_FAILING,
        AlertKind.NEEDS_PERSON,
    ]
)


def test_each_condition_reaches_webhook_and_smtp_once(
    engine: Engine,
    database_url: str,
    conditions: dict[str, str],
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    resources = _resources(database_url, webhook.url, smtp_server)
    first = _tick(instance, resources)
    assert _kinds_in_posts(webhook.posts) == LEDGER_KINDS
    assert sorted(m["Subject"].split(":")[0].split()[-1] for m in smtp_server.messages) == (
        LEDGER_KINDS
    )
    assert set(smtp_server.logins) == {(SMTP_USER, SMTP_SECRET)}  # the ref was resolved
    assert "webhook: 5 alert(s)" in (first.skip_message or "")

    by_kind = {p["kind"]: p for p in webhook.posts}
    timeout = by_kind["ACK_TIMEOUT"]
    assert timeout["org_id"] == "acme" and timeout["drafts"] == ["acme:D-1"]
    assert timeout["error_code"] == "ACK_TIMEOUT"
    assert conditions["ack_timeout"] in str(timeout["next_step"])
    assert "orderflow-exports acks errors --org acme" in str(timeout["next_step"])
    rejected = by_kind["ERP_REJECTED"]
    assert rejected["error_message"] == "customer 4711 is blocked"
    assert "exports retry --org acme --draft D-2" in str(rejected["next_step"])
    pending = by_kind["PENDING_TOO_LONG"]
    assert pending["drafts"] == ["acme:D-3"] and "run-abc" in str(pending["next_step"])
    streak = by_kind["TRANSPORT_FAILING"]
    assert streak["org_id"] == "gamma" and streak["error_code"] == "AUTH"
    assert streak["dedupe_key"] == f"TRANSPORT_FAILING:gamma:{conditions['streak_first']}"
    assert "orderflow-exports connectors set --org gamma" in str(streak["next_step"])
    person = by_kind["NEEDS_PERSON"]
    assert person["drafts"] == ["acme:D-4"] and person["error_code"] == "PERMANENT"
    assert "exports attention --org acme" in str(person["next_step"])
    # The same keys go with the e-mails, and the e-mail body names the next step too.
    assert {h["Idempotency-Key"] for h in webhook.headers} == {
        str(m["X-Orderflow-Alert-Key"]).strip() for m in smtp_server.messages
    }
    mail = next(m for m in smtp_server.messages if "ERP_REJECTED" in m["Subject"])
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and "acme:D-2" in body.get_content()
    assert "Next step:" in body.get_content()

    # Second tick: every event was told already; nothing goes out again.
    second = _tick(instance, resources)
    assert len(webhook.posts) == 5 and len(smtp_server.messages) == 5
    assert "none" in (second.skip_message or "") and "10 event(s) already told" in (
        second.skip_message or ""
    )

    # No secret anywhere: not the connectors' (env: and file:), not the SMTP password.
    for raw in [*webhook.raw, *smtp_server.raw]:
        for secret in SECRETS:
            assert secret.encode() not in raw


def test_new_event_of_same_draft_is_told_again(
    engine: Engine,
    database_url: str,
    conditions: dict[str, str],
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    resources = _resources(database_url, webhook.url, smtp_server)
    _tick(instance, resources)
    # A person re-sent D-2 and the ERP rejected it again: a new attempt is a new event.
    _export(
        SqlExportLedger(engine),
        "acme",
        "D-2",
        attempt=2,
        created=NOW - timedelta(minutes=1),
        sent=True,
        fail=("ERP_REJECTED", "customer 4711 is still blocked"),
    )
    _tick(instance, resources)
    assert [p["error_message"] for p in webhook.posts[5:]] == ["customer 4711 is still blocked"]
    assert len(smtp_server.messages) == 6


def test_unreachable_webhook_loses_nothing_and_smtp_still_served(
    engine: Engine,
    database_url: str,
    conditions: dict[str, str],
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    dead = "http://127.0.0.1:9/hooks/secret-token-in-path"  # discard port: nothing listens
    with pytest.raises(AlertsFailed) as failed:
        _tick(instance, _resources(database_url, dead, smtp_server))
    message = str(failed.value)
    assert "alert channel webhook: cannot POST to http://127.0.0.1:9" in message
    assert "secret-token-in-path" not in message  # the URL's path may hold a token
    assert len(smtp_server.messages) == 5
    assert {c for _, c in _sent_rows(engine)} == {"smtp"}  # webhook: nothing marked sent

    # Fixed: the next tick delivers the webhook's alerts, the SMTP server gets nothing again.
    _tick(instance, _resources(database_url, webhook.url, smtp_server))
    assert _kinds_in_posts(webhook.posts) == LEDGER_KINDS
    assert len(smtp_server.messages) == 5


def test_smtp_refusing_is_a_clear_error_and_retried(
    engine: Engine,
    database_url: str,
    conditions: dict[str, str],
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    smtp_server.refuse = True
    with pytest.raises(AlertsFailed) as failed:
        _tick(instance, _resources(database_url, webhook.url, smtp_server))
    assert "alert channel smtp: 127.0.0.1:" in str(failed.value)
    assert "554" in str(failed.value) and "alerts are not welcome here" in str(failed.value)
    assert SMTP_SECRET not in str(failed.value)
    assert len(webhook.posts) == 5 and not smtp_server.messages

    smtp_server.refuse = False
    _tick(instance, _resources(database_url, webhook.url, smtp_server))
    assert len(smtp_server.messages) == 5 and len(webhook.posts) == 5


def test_webhook_http_error_is_clear(
    database_url: str,
    conditions: dict[str, str],
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    webhook.status = 503
    with pytest.raises(AlertsFailed, match="answered HTTP 503"):
        _tick(instance, _resources(database_url, webhook.url, smtp_server))


def test_many_drafts_of_one_org_go_out_as_one_alert(
    engine: Engine,
    database_url: str,
    secrets_env: Path,
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    ledger = SqlExportLedger(engine)
    for n in range(7):
        _export(
            ledger,
            "acme",
            f"T-{n}",
            created=NOW - timedelta(days=2),
            sent=True,
            fail=("ACK_TIMEOUT", "no ack within 86400 s of sending"),
        )
    resources = _resources(database_url, webhook.url, smtp_server, max_drafts_per_alert=5)
    _tick(instance, resources)
    assert sorted(len(p["drafts"]) for p in webhook.posts) == [2, 5]  # type: ignore[arg-type]
    assert len(smtp_server.messages) == 2
    _tick(instance, resources)
    assert len(webhook.posts) == 2 and len(smtp_server.messages) == 2


def test_nothing_configured_logs_only(
    database_url: str,
    conditions: dict[str, str],
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ORDERFLOW_ALERT_WEBHOOK_URL", "ORDERFLOW_ALERT_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    resources = {"notifier": NotifierResource(), "database": DatabaseResource(url=database_url)}
    first = _tick(instance, resources)
    assert "log: 5 alert(s)" in (first.skip_message or "")
    second = _tick(instance, resources)
    assert "5 event(s) already told" in (second.skip_message or "")


# --- failed runs ------------------------------------------------------------------------------


def _failed_export_run(
    instance: dg.DagsterInstance, tmp_path: Path, partition: str
) -> dg.ExecuteInProcessResult:
    """A real export_drafts_job run that fails: its database was never migrated."""
    from orderflow_exports.defs.definitions import defs

    instance.add_dynamic_partitions("approved_drafts", [partition])
    job = defs.resolve_job_def("export_drafts_job")
    unmigrated = DatabaseResource(url=f"sqlite:///{tmp_path / 'unmigrated.db'}")
    return job.execute_in_process(
        instance=instance,
        partition_key=partition,
        resources={"database": unmigrated},
        raise_on_error=False,
    )


def test_failed_run_reaches_both_channels_once(
    engine: Engine,
    database_url: str,
    secrets_env: Path,
    tmp_path: Path,
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    result = _failed_export_run(instance, tmp_path, "acme:D-9")
    assert not result.success
    resources = _resources(database_url, webhook.url, smtp_server)
    with dg.build_run_status_sensor_context(
        sensor_name="export_run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources=resources,
    ).for_run_failure() as context:
        export_run_failure_alert_sensor(context)
    [post] = webhook.posts
    assert post["kind"] == "RUN_FAILED" and post["org_id"] == "acme"
    assert post["drafts"] == ["acme:D-9"]
    assert result.run_id in str(post["next_step"])
    assert "orderflow-exports db upgrade" in str(post["error_message"])  # the step's own error
    assert len(smtp_server.messages) == 1

    # The alert sensor also looks at recent failed runs, and finds it told already.
    _tick(instance, resources)
    assert [p["kind"] for p in webhook.posts] == ["RUN_FAILED"]
    assert len(smtp_server.messages) == 1


def test_failed_run_whose_alert_failed_is_told_by_the_alert_sensor(
    engine: Engine,
    database_url: str,
    secrets_env: Path,
    tmp_path: Path,
    webhook: WebhookReceiver,
    smtp_server: SmtpReceiver,
    instance: dg.DagsterInstance,
) -> None:
    result = _failed_export_run(instance, tmp_path, "acme:D-8")
    smtp_server.refuse = True
    with (
        dg.build_run_status_sensor_context(
            sensor_name="export_run_failure_alert_sensor",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources=_resources(database_url, webhook.url, smtp_server),
        ).for_run_failure() as context,
        pytest.raises(AlertsFailed, match="alert channel smtp"),
    ):
        export_run_failure_alert_sensor(context)
    assert len(webhook.posts) == 1
    smtp_server.refuse = False
    _tick(instance, _resources(database_url, webhook.url, smtp_server))
    assert len(webhook.posts) == 1
    [mail] = smtp_server.messages
    assert f"run {result.run_id} of export_drafts_job failed" in mail["Subject"]


def test_conditions_read_newest_first_so_a_told_backlog_hides_nothing(
    engine: Engine, secrets_env: Path
) -> None:
    from orderflow_exports.adapters.sql.alerts import SqlAlertConditions

    ledger = SqlExportLedger(engine)
    for n in range(4):
        _export(
            ledger,
            "acme",
            f"B-{n}",
            created=NOW - timedelta(hours=10 - n),
            sent=True,
            fail=("ACK_TIMEOUT", "no ack"),
        )
    newest = SqlAlertConditions(engine).latest_failed(["ACK_TIMEOUT"], limit=2)
    assert [r.draft_order_id for r in newest] == ["B-3", "B-2"]


def test_alert_migration_goes_down_and_up(engine: Engine) -> None:
    from sqlalchemy import inspect

    from orderflow_exports.adapters.sql.engine import current_revision, upgrade_schema

    assert "erp_alert" in inspect(engine).get_table_names()
    from alembic import command

    from orderflow_exports.adapters.sql.engine import _alembic_config

    command.downgrade(_alembic_config(engine), "0003")
    assert "erp_alert" not in inspect(engine).get_table_names()
    assert current_revision(engine) == "0003"
    upgrade_schema(engine)
    assert current_revision(engine) == "0006"  # the newest revision
    assert "erp_alert" in inspect(engine).get_table_names()
