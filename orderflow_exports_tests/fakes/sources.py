"""Fakes of the read-mostly ports: ``DraftSource``, ``ConnectorConfigs``, ``RunLiveness``,
``RunFailures``.

Also :func:`sample_draft`, a valid APPROVED draft with its lines, built without a database.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from orderflow_exports.domain.drafts import APPROVED, DraftLine, DraftOrder
from orderflow_exports.domain.export_requests import Candidate, CandidatePage, UnreadableDraft
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportRequests, FailedRun
from orderflow_exports.domain.records import ConnectorConfig

APPROVED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def sample_draft(
    ref: DraftRef, *, lines: int = 3, status: str = APPROVED
) -> tuple[DraftOrder, builtins.list[DraftLine]]:
    """A draft of ``ref`` with ``lines`` valid lines, as OrderFlow core would hold it."""
    draft = DraftOrder(
        id=ref.draft_order_id,
        org_id=ref.org_id,
        status=status,
        customer_po_number=f"PO-{ref.draft_order_id}",
        customer_erp_number="C-10077",
        customer_name="Müller & Söhne GmbH",
        order_date=date(2026, 11, 19),
        requested_delivery_date=date(2026, 12, 3),
        currency="EUR",
        ship_to={
            "name": "Müller & Söhne GmbH – Lager Süd",
            "street": "Hauptstraße 5",
            "postal_code": "80331",
            "city": "München",
            "country": "DE",
        },
        notes=None,
        approved_at=APPROVED_AT if status == APPROVED else None,
        updated_at=APPROVED_AT,
        line_count=lines,
    )
    return draft, [
        DraftLine(
            line_no=n,
            erp_item_number=f"ITEM-{n:05d}",
            customer_item_number=f"CUST-{n}",
            description=f"Schraube M{4 + n % 8}, verzinkt",
            quantity=Decimal(n),
            uom="PCE",
            unit_price=Decimal("0.3333") + n,
            requested_delivery_date=None,
        )
        for n in range(1, lines + 1)
    ]


class FakeDraftSource:
    """``DraftSource`` over a dict of drafts; counts reads so tests can see what was fetched.

    The candidate query is the SQL adapter's own (its tests cover it); here it pages every
    APPROVED draft that was added, with its record in ``requests`` (when given), and leaves the
    choice to the planner: a superset of the real candidates, as the real query's is. This fake
    knows no exports, so no candidate has any; ``unreadable`` rows come on every first page.
    """

    def __init__(self, requests: ExportRequests | None = None) -> None:
        self.drafts: dict[DraftRef, tuple[DraftOrder, builtins.list[DraftLine]]] = {}
        self.reads: builtins.list[DraftRef] = []
        self.requests = requests
        self.unreadable: builtins.list[UnreadableDraft] = []

    def add(self, ref: DraftRef, *, lines: int = 3, status: str = APPROVED) -> DraftOrder:
        """Add :func:`sample_draft` of ``ref``; returns the draft."""
        draft, draft_lines = sample_draft(ref, lines=lines, status=status)
        self.drafts[ref] = (draft, draft_lines)
        return draft

    def set_status(self, ref: DraftRef, status: str) -> None:
        draft, lines = self.drafts[ref]
        self.drafts[ref] = (replace(draft, status=status), lines)

    def get_draft(self, ref: DraftRef) -> DraftOrder | None:
        self.reads.append(ref)
        found = self.drafts.get(ref)
        return None if found is None else found[0]

    def iter_lines(self, ref: DraftRef, chunk_size: int = 1000) -> Iterator[DraftLine]:
        found = self.drafts.get(ref)
        yield from ([] if found is None else found[1])

    def find_export_candidates(
        self,
        limit: int,
        now: datetime,
        after: object | None = None,
        *,
        changed_since: datetime | None = None,
        due_only: bool = False,
    ) -> CandidatePage:
        candidates = [
            Candidate(
                draft=draft,
                request=None if self.requests is None else self.requests.get(ref),
                has_exports=False,
            )
            for ref, (draft, _) in self.drafts.items()
            if draft.status == APPROVED
        ]
        if changed_since is not None:
            candidates = [c for c in candidates if c.draft.updated_at >= changed_since]
            candidates.sort(key=lambda c: (c.draft.updated_at, c.draft.org_id, c.draft.id))
        else:
            candidates.sort(
                key=lambda c: (
                    c.draft.approved_at or c.draft.updated_at,
                    c.draft.org_id,
                    c.draft.id,
                )
            )
        if due_only:
            candidates = [
                c
                for c in candidates
                if c.request is not None
                and c.request.next_due_at is not None
                and c.request.next_due_at <= now
            ]
        start = after if isinstance(after, int) else 0
        end = start + limit
        return CandidatePage(
            candidates=candidates[start:end],
            unreadable=list(self.unreadable) if after is None else [],
            cursor=end if end < len(candidates) else None,
        )


class FakeConnectorConfigs:
    """``ConnectorConfigs`` over a dict; ``reads`` counts ``get`` calls per org.

    ``upsert`` stamps ``updated_at`` from ``clock``, as the SQL adapter stamps the row: between
    two orgs whose folders conflict, the row saved first keeps working.
    """

    def __init__(
        self, *configs: ConnectorConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.clock = clock
        self.configs: dict[str, ConnectorConfig] = {}
        self.reads: dict[str, int] = {}
        for config in configs:
            self.upsert(config)

    def get(self, org_id: str) -> ConnectorConfig | None:
        self.reads[org_id] = self.reads.get(org_id, 0) + 1
        return self.configs.get(org_id)

    def list(self, *, enabled_only: bool = False) -> builtins.list[ConnectorConfig]:
        return [c for _, c in sorted(self.configs.items()) if c.enabled or not enabled_only]

    def upsert(self, config: ConnectorConfig) -> None:
        self.configs[config.org_id] = replace(config, updated_at=self.clock())

    def delete(self, org_id: str) -> bool:
        """Remove the org's config; False when it had none."""
        return self.configs.pop(org_id, None) is not None


class FakeRunLiveness:
    """``RunLiveness``: the runs named in ``active`` are running, every other run is not."""

    def __init__(self, *active: str) -> None:
        self.active: set[str] = set(active)

    def is_active(self, run_id: str) -> bool:
        return run_id in self.active


class FakeRunFailures:
    """``RunFailures``: the runs added with their job and last update, newest first."""

    def __init__(self) -> None:
        self.runs: list[tuple[FailedRun, datetime]] = []
        self.asked: list[tuple[str, datetime, int]] = []

    def add(self, run: FailedRun, *, updated_at: datetime) -> None:
        self.runs.append((run, updated_at))

    def failed_since(self, job_name: str, since: datetime, *, limit: int) -> list[FailedRun]:
        self.asked.append((job_name, since, limit))
        newest_first = sorted(self.runs, key=lambda entry: entry[1], reverse=True)
        return [run for run, at in newest_first if run.job_name == job_name and at > since][:limit]
