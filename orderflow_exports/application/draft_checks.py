"""Checking a run's drafts before they are exported (what ``approved_drafts`` materializes).

Each draft of the run is read and checked on its own (``domain.drafts.ensure_exportable``): one
refused draft never hides the others. The refused ones are reported as REFUSED in
``erp_export_request``, so the sensor stops re-driving them until they are approved again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orderflow_exports.domain.drafts import ensure_exportable
from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.export_requests import RequestOutcome
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import DraftSource

RequestReport = tuple[DraftRef, RequestOutcome, str]


@dataclass
class DraftCheck:
    """The drafts of a run by partition key: a summary of each exportable one, or the reason
    each other one is refused."""

    refs: dict[str, DraftRef]
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def refusal_reports(self) -> list[RequestReport]:
        """How each refused draft's try ended, for ``erp_export_request``."""
        return [(self.refs[key], RequestOutcome.REFUSED, why) for key, why in self.refused.items()]

    def refusal_text(self) -> str:
        return "refused: " + "; ".join(f"{key}: {why}" for key, why in self.refused.items())


def check_drafts(drafts: DraftSource, refs: Mapping[str, DraftRef]) -> DraftCheck:
    """Read and check every draft of ``refs`` (partition key → draft)."""
    check = DraftCheck(dict(refs))
    for key, ref in refs.items():
        try:
            draft = ensure_exportable(ref, drafts.get_draft(ref))
        except OrderflowError as exc:
            check.refused[key] = str(exc)
            continue
        check.accepted[key] = {
            "customer": draft.customer_name,
            "line_count": draft.line_count,
            "approved_at": draft.approved_at.isoformat() if draft.approved_at else None,
        }
    return check
