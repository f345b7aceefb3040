"""Draft orders as read from OrderFlow core (CONTRACT §1): plain records, validated for export."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from orderflow_exports.domain.errors import DraftRefused, InvalidIdentifier
from orderflow_exports.domain.naming import DraftRef

APPROVED = "APPROVED"


@dataclass(frozen=True)
class DraftOrder:
    """The header of one draft order, as stored in ``draft_order``."""

    id: str
    org_id: str
    status: str
    customer_po_number: str | None
    customer_erp_number: str
    customer_name: str
    order_date: date
    requested_delivery_date: date | None
    currency: str
    ship_to: Mapping[str, Any]
    notes: str | None
    approved_at: datetime | None
    updated_at: datetime
    line_count: int = field(default=0)

    @property
    def ref(self) -> DraftRef:
        return DraftRef(self.org_id, self.id)


@dataclass(frozen=True)
class DraftLine:
    """One line of a draft order, as stored in ``draft_order_line``."""

    line_no: int
    erp_item_number: str
    customer_item_number: str | None
    description: str
    quantity: Decimal
    uom: str
    unit_price: Decimal
    requested_delivery_date: date | None


def refusal_reason(ref: DraftRef, draft: DraftOrder | None) -> str | None:
    """Why ``draft`` cannot be exported, or None when it can (header-level checks)."""
    if draft is None:
        return f"draft {ref} does not exist"
    if draft.org_id != ref.org_id:
        return f"draft {draft.id} belongs to another org, not to {ref.org_id}"
    try:
        DraftRef(draft.org_id, draft.id)
    except InvalidIdentifier as exc:
        return str(exc)
    if draft.status != APPROVED:
        return f"draft {ref} is {draft.status}, only APPROVED drafts are exported"
    if draft.line_count < 1:
        return f"draft {ref} has no lines"
    return None


def ensure_exportable(ref: DraftRef, draft: DraftOrder | None) -> DraftOrder:
    """Return the draft if it may be exported, else raise :class:`DraftRefused` with the reason."""
    reason = refusal_reason(ref, draft)
    if reason is not None:
        raise DraftRefused(reason)
    assert draft is not None
    return draft
