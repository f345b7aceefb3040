import itertools

import pytest

from orderflow_exports.domain.status import ExportStatus, can_transition, require_transition

P, S, A, F = ExportStatus.PENDING, ExportStatus.SENT, ExportStatus.ACKED, ExportStatus.FAILED
ALLOWED = {(P, S), (P, F), (P, A), (S, A), (S, F)}


@pytest.mark.parametrize("old,new", list(itertools.product(ExportStatus, repeat=2)))
def test_transition_table(old: ExportStatus, new: ExportStatus) -> None:
    assert can_transition(old, new) is ((old, new) in ALLOWED)
    if (old, new) not in ALLOWED:
        with pytest.raises(ValueError, match=f"from {old} to {new}"):
            require_transition(old, new)


def test_terminal_and_active_statuses() -> None:
    assert {s for s in ExportStatus if s.is_terminal} == {A, F}
    assert {s for s in ExportStatus if s.is_active} == {P, S}
