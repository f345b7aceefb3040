"""Whether an org's connector config is safe to act on (CONTRACT §2: export_path, ack_path).

Pure domain. ``connector_problems`` returns the reasons a config must not be used, in words an
operator can act on; an empty list means it is fine.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from orderflow_exports.domain.records import ConnectorConfig


def _normalized(path: str) -> str:
    return posixpath.normpath(path) if path else path


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def connector_problems(config: ConnectorConfig, others: Sequence[ConnectorConfig]) -> list[str]:
    """Why ``config`` must not be used (empty when it may); ``others`` are the other orgs."""
    del others  # other orgs' folders are compared by the full rule set
    problems: list[str] = []
    ack, export = config.ack_path.strip(), config.export_path.strip()
    if not ack:
        problems.append(f"org {config.org_id}: ack_path is empty")
    elif not ack.startswith("/"):
        problems.append(f"org {config.org_id}: ack_path {ack!r} is not an absolute path")
    if ack and export and ack.startswith("/") and export.startswith("/"):
        ack_n, export_n = _normalized(ack), _normalized(export)
        if ack_n == export_n:
            problems.append(
                f"org {config.org_id}: ack_path {ack!r} is the export folder; the ERP's acks "
                "and our orders must live in separate folders"
            )
        elif _within(ack_n, export_n) or _within(export_n, ack_n):
            problems.append(
                f"org {config.org_id}: ack_path {ack!r} and export_path {export!r} are nested "
                "in each other"
            )
    return problems
