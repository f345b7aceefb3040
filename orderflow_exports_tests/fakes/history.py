"""Writing an export history into a ledger, attempt by attempt, as runs and acks would."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from orderflow_exports.domain.errors import ErrorCode
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportLedger
from orderflow_exports.domain.records import NewExport
from orderflow_exports.domain.status import ExportStatus

Ending = Literal["PENDING", "SENT", "ACKED"] | ErrorCode


def add_attempt(
    ledger: ExportLedger, ref: DraftRef, attempt: int, ending: Ending, at: datetime
) -> str:
    """One attempt of ``ref`` created at ``at`` and left PENDING, SENT, ACKED or FAILED with
    the given code (FAILED after SENT, as an ERP's answer or a deadline makes it); its id."""
    export_id = str(uuid.uuid4())
    ledger.create_pending(
        NewExport(
            id=export_id,
            ref=ref,
            attempt=attempt,
            filename=f"{ref.org_id}_{ref.draft_order_id}_{export_id}.json",
            dropzone_path=f"/dz/{ref.org_id}_{ref.draft_order_id}_{export_id}.json",
            storage_key=f"exports/{ref.org_id}/{ref.draft_order_id}/{export_id}.json",
            content_sha256="0" * 64,
            byte_size=1,
            line_count=1,
            forced=False,
            dagster_run_id="run-1",
            created_at=at,
        )
    )
    if ending == "PENDING":
        return export_id
    assert ledger.mark_sent(export_id, at=at)
    if ending == "ACKED":
        assert ledger.mark_acked(
            export_id, expected=ExportStatus.SENT, erp_order_number=None, at=at
        )
    elif isinstance(ending, ErrorCode):
        assert ledger.mark_failed(
            export_id, expected=ExportStatus.SENT, code=ending, message="m", at=at
        )
    return export_id
