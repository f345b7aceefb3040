"""The SMTP notifier's STARTTLS and login against a real aiosmtpd that requires TLS."""

from __future__ import annotations

import pytest

from orderflow_exports.adapters.notifiers.smtp import SmtpNotifier
from orderflow_exports.application.run_failures import run_failed_alert
from orderflow_exports.domain.alerts import AlertDeliveryError
from orderflow_exports_tests.support.alert_servers import TlsSmtpReceiver, tls_smtp_server

__all__ = ["tls_smtp_server"]  # fixture

PASSWORD = "tls-pass-Kd93"
ALERT = run_failed_alert(
    run_id="r-1", job_name="export_drafts_job", partition_keys=["acme:D-1"], error="boom"
)


def _notifier(server: TlsSmtpReceiver, **overrides: object) -> SmtpNotifier:
    settings: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "sender": "alerts@example.test",
        "recipients": ["ops@example.test"],
        "starttls": True,
        "username": "alerts",
        "password": lambda: PASSWORD,
        "timeout_seconds": 5,
        "ca_file": server.ca_file,
        **overrides,
    }
    return SmtpNotifier(**settings)  # type: ignore[arg-type]


def test_starttls_then_login_then_message(tls_smtp_server: TlsSmtpReceiver) -> None:
    _notifier(tls_smtp_server).send(ALERT)
    assert tls_smtp_server.logins == [("alerts", PASSWORD)]
    [raw] = tls_smtp_server.raw
    assert b"RUN_FAILED:r-1" in raw and PASSWORD.encode() not in raw


def test_untrusted_certificate_is_refused_clearly(tls_smtp_server: TlsSmtpReceiver) -> None:
    with pytest.raises(AlertDeliveryError, match="CERTIFICATE_VERIFY_FAILED") as failed:
        _notifier(tls_smtp_server, ca_file=None).send(ALERT)
    assert PASSWORD not in str(failed.value)
    assert not tls_smtp_server.logins and not tls_smtp_server.raw


def test_server_requiring_tls_refuses_plain_login_clearly(
    tls_smtp_server: TlsSmtpReceiver,
) -> None:
    with pytest.raises(AlertDeliveryError, match="alert channel smtp") as failed:
        _notifier(tls_smtp_server, starttls=False).send(ALERT)
    assert PASSWORD not in str(failed.value)
    assert not tls_smtp_server.raw
