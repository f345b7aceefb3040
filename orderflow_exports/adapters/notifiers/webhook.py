"""JSON POST of each alert to one URL (Slack-, Teams- or Opsgenie-style generic webhooks)."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from orderflow_exports.domain.alerts import Alert, AlertDeliveryError


def _where(url: str) -> str:
    """scheme://host:port only: webhook URLs often carry a token in their path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class WebhookNotifier:
    """POSTs the alert's JSON (``Alert.as_json``) to ``url``; any 2xx answer is delivery."""

    channel = "webhook"

    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"webhook URL must be http(s), got {_where(url)!r}")
        self._url = url
        self._timeout = timeout_seconds

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(
            self._url,
            data=alert.as_bytes(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "orderflow_exports-alerts",
                "Idempotency-Key": alert.dedupe_key,
            },
        )
        where = _where(self._url)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise AlertDeliveryError(
                self.channel, f"{where} answered HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertDeliveryError(
                self.channel, f"cannot POST to {where} within {self._timeout:g} s: {reason}"
            ) from None
        if not 200 <= status < 300:
            raise AlertDeliveryError(self.channel, f"{where} answered HTTP {status}")
