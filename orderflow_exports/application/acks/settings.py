"""The bounds of one ack pass: the single place their defaults are declared."""

from __future__ import annotations

from dataclasses import dataclass

from orderflow_exports.domain.ack_files import DEFAULT_MAX_ACK_BYTES, DEFAULT_SETTLE_SECONDS


@dataclass(frozen=True)
class AckSettings:
    """Bounds of one pass; the defaults keep a sensor tick far inside its 60 s timeout."""

    max_files_per_org: int = 100
    max_bytes: int = DEFAULT_MAX_ACK_BYTES
    max_timeouts_per_org: int = 500
    # Stop starting new files or orgs once a pass has run this long; the rest waits.
    time_budget_seconds: float | None = None
    # Each org's pass runs in its own thread and is abandoned (its connection closed) after this.
    org_time_budget_seconds: float | None = None
    # Hard end of the whole pass: no org's pass is waited for beyond it.
    pass_deadline_seconds: float | None = None
    # An ack that does not parse is refused only when settled (see domain.ack_files.is_settled).
    settle_seconds: float = DEFAULT_SETTLE_SECONDS

    def __post_init__(self) -> None:
        if self.max_files_per_org < 1 or self.max_timeouts_per_org < 1 or self.max_bytes < 1:
            raise ValueError("ack pass limits must be positive")
        for name in ("time_budget_seconds", "org_time_budget_seconds", "pass_deadline_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive")
        if self.settle_seconds < 0:
            raise ValueError("settle_seconds must be 0 (judge at once) or positive")


#: The defaults, for configuration layers that expose these bounds under their own names.
DEFAULT_ACK_SETTINGS = AckSettings()
