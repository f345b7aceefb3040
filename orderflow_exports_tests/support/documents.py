"""Building documents from sample drafts without a database (domain-level tests)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from orderflow_exports.demo import SampleDraft, draft_row, line_rows
from orderflow_exports.domain.document import DocumentStats, build_header, write_document
from orderflow_exports.domain.drafts import DraftLine, DraftOrder

SNAPSHOT_EXPORT_ID = "3f2b6c1e-9a4d-4e8b-b1c7-0d5e6f7a8b9c"
SNAPSHOT_CREATED_AT = datetime(2026, 11, 26, 10, 15, 30, tzinfo=UTC)
# Unicode in names, a 0-price line (2) and 4-decimal quantities (lines 1 and 5).
SNAPSHOT_DRAFT = SampleDraft("acme", "D-1003", lines=5, zero_price_line=2)


def sample_order(sample: SampleDraft) -> tuple[DraftOrder, list[DraftLine]]:
    lines = [
        DraftLine(**{k: v for k, v in row.items() if k not in ("id", "draft_order_id")})
        for row in line_rows(sample)
    ]
    return DraftOrder(**draft_row(sample), line_count=len(lines)), lines


def render(
    sample: SampleDraft,
    *,
    export_id: str = SNAPSHOT_EXPORT_ID,
    created_at: datetime = SNAPSHOT_CREATED_AT,
    attempt: int = 1,
) -> tuple[bytes, DocumentStats]:
    order, lines = sample_order(sample)
    header = build_header(order, export_id=export_id, attempt=attempt, created_at=created_at)
    out = io.BytesIO()
    stats = write_document(out, header, lines)
    return out.getvalue(), stats
