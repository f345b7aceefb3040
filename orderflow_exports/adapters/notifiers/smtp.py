"""E-mail over SMTP: optional STARTTLS and login, the password through a secret reference."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage

from orderflow_exports.domain.alerts import Alert, AlertDeliveryError


class SmtpNotifier:
    """Sends each alert as one plain-text e-mail (the JSON payload attached as alert.json).

    ``password`` is a callable so the secret is read when sending, and never kept on the
    object or put into an error message.
    """

    channel = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        starttls: bool = False,
        username: str | None = None,
        password: Callable[[], str] | None = None,
        timeout_seconds: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        if not recipients:
            raise ValueError("SMTP alerts need at least one recipient")
        if username and password is None:
            raise ValueError("SMTP login needs a password reference")
        self._host, self._port = host, port
        self._sender, self._recipients = sender, list(recipients)
        self._starttls, self._username, self._password = starttls, username, password
        self._timeout = timeout_seconds
        # The server's certificate is always verified: against the system's CAs, or ca_file.
        self._ca_file = ca_file

    def _message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = alert.subject
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["X-Orderflow-Alert-Key"] = alert.dedupe_key
        message.set_content(alert.as_text())
        message.add_attachment(
            alert.as_bytes(), maintype="application", subtype="json", filename="alert.json"
        )
        return message

    def send(self, alert: Alert) -> None:
        where = f"{self._host}:{self._port}"
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file))
                if self._username and self._password is not None:
                    smtp.login(self._username, self._password())
                refused = smtp.send_message(self._message(alert))
        except smtplib.SMTPAuthenticationError as exc:
            raise AlertDeliveryError(
                self.channel, f"{where} refused the login of {self._username!r} ({exc.smtp_code})"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raw = exc.smtp_error
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
            raise AlertDeliveryError(
                self.channel, f"{where} refused the message: {exc.smtp_code} {text}".strip()
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise AlertDeliveryError(
                self.channel, f"{where} refused every recipient: {sorted(exc.recipients)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertDeliveryError(
                self.channel, f"cannot send through {where} within {self._timeout:g} s: {exc}"
            ) from None
        if refused:
            raise AlertDeliveryError(self.channel, f"{where} refused recipients {sorted(refused)}")
