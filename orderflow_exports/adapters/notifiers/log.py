"""The safe default when no channel is configured: each alert becomes one warning log line."""

from __future__ import annotations

import logging
from typing import Any

from orderflow_exports.domain.alerts import Alert


class LogNotifier:
    """Writes the alert's text to ``logger`` (a Dagster sensor's log shows it in the tick)."""

    channel = "log"

    def __init__(self, logger: Any | None = None) -> None:
        self._logger = logger or logging.getLogger("orderflow_exports.alerts")

    def send(self, alert: Alert) -> None:
        self._logger.warning(f"{alert.subject}\n{alert.as_text()}")
