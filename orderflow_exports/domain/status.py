"""The erp_export status machine: PENDING → SENT → ACKED, and FAILED from PENDING or SENT."""

from __future__ import annotations

from enum import StrEnum


class ExportStatus(StrEnum):
    """Status of one export attempt."""

    PENDING = "PENDING"
    SENT = "SENT"
    ACKED = "ACKED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (ExportStatus.ACKED, ExportStatus.FAILED)

    @property
    def is_active(self) -> bool:
        """PENDING and SENT: at most one such row per draft."""
        return not self.is_terminal


ALLOWED_TRANSITIONS: frozenset[tuple[ExportStatus, ExportStatus]] = frozenset(
    {
        (ExportStatus.PENDING, ExportStatus.SENT),
        (ExportStatus.PENDING, ExportStatus.FAILED),
        (ExportStatus.PENDING, ExportStatus.ACKED),  # an ack may overtake the SENT update
        (ExportStatus.SENT, ExportStatus.ACKED),
        (ExportStatus.SENT, ExportStatus.FAILED),
    }
)


def can_transition(old: ExportStatus, new: ExportStatus) -> bool:
    return (old, new) in ALLOWED_TRANSITIONS


def require_transition(old: ExportStatus, new: ExportStatus) -> None:
    if not can_transition(old, new):
        raise ValueError(f"erp_export status cannot go from {old} to {new}")
