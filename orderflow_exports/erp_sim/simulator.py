"""The simulated ERP's loop: take orders from each org's export folder, answer in its ack folder.

It goes through the project's own dropzone sessions (local folders, or SFTP with the pinned host
key and the org's secret references), as an ERP file adapter would: list ``*.json``, move the file
into ``taken/`` inside the export folder (so the exporter's listing no longer shows it and the
soak test can count what arrived), read and validate it, and after the policy's delay write one
ack file, atomically, into the org's ack folder. It writes nowhere else: an ack folder that is a
symlink, or missing, is refused for that org.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orderflow_exports.domain.errors import OrderflowError
from orderflow_exports.domain.ports import DropzoneConnector
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.erp_sim.decisions import (
    Decision,
    Policy,
    Verdict,
    ack_document,
    ack_name,
    decide,
    invalid_order,
)
from orderflow_exports.erp_sim.validation import check_order

log = logging.getLogger("orderflow_exports.erp_sim")

TAKEN = "taken"
MAX_ORDER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PendingAck:
    """An ack waiting for its delay to pass."""

    due: float
    org_id: str
    name: str
    data: bytes
    verdict: Verdict


@dataclass
class SimulatorStats:
    """What the simulator did so far, per verdict (and orders it could not read)."""

    taken: int = 0
    accepted: int = 0
    rejected: int = 0
    silent: int = 0
    unreadable: int = 0
    org_errors: int = 0
    taken_names: list[str] = field(default_factory=list)


def _is_order_name(name: str) -> bool:
    # The exporter's temp files are dot-files ending in .tmp; receivers never touch them.
    return name.endswith(".json") and not name.startswith(".")


class ErpSimulator:
    """Polls the orgs' export folders and answers with ack files after the policy's delay."""

    def __init__(
        self,
        configs: Callable[[], Sequence[ConnectorConfig]],
        sessions: DropzoneConnector,
        policy: Policy,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._configs = configs
        self._sessions = sessions
        self._policy = policy
        self._clock = clock
        self._wall_clock = wall_clock
        self._pending: list[PendingAck] = []
        self.stats = SimulatorStats()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def poll(self) -> None:
        """One pass over every org: take new orders, then write the acks that are due."""
        configs = {c.org_id: c for c in self._configs()}
        for config in configs.values():
            try:
                self._take_orders(config)
            except (OrderflowError, OSError) as exc:
                self.stats.org_errors += 1
                self._sessions.discard(config)
                log.error("%s: cannot read its export folder: %s", config.org_id, exc)
        self.flush(configs)

    def flush(self, configs: dict[str, ConnectorConfig] | None = None) -> None:
        """Write every ack whose delay has passed."""
        configs = configs if configs is not None else {c.org_id: c for c in self._configs()}
        now = self._clock()
        due = [p for p in self._pending if p.due <= now]
        self._pending = [p for p in self._pending if p.due > now]
        for item in due:
            config = configs.get(item.org_id)
            if config is None:
                log.error("%s: no connector any more; dropping ack %s", item.org_id, item.name)
                continue
            try:
                self._write_ack(config, item)
            except (OrderflowError, OSError) as exc:
                self.stats.org_errors += 1
                self._sessions.discard(config)
                # Kept for the next pass: an ERP retries writing its answer.
                self._pending.append(item)
                log.error("%s: cannot write ack %s: %s", item.org_id, item.name, exc)

    def run(self, *, interval: float, once: bool, stop: Callable[[], bool] = lambda: False) -> None:
        """Poll every ``interval`` seconds; with ``once``, one pass and then its pending acks."""
        while not stop():
            self.poll()
            if once:
                while self._pending and not stop():
                    wait = max(0.0, min(p.due for p in self._pending) - self._clock())
                    time.sleep(min(wait, interval) if wait else 0)
                    self.flush()
                return
            time.sleep(interval)

    def _take_orders(self, config: ConnectorConfig) -> None:
        session = self._sessions.session_for(config)
        names = [n for n in session.list_files(config.export_path) if _is_order_name(n)]
        for name in names:
            # Moving first is the ERP's claim: the file leaves the inbox before it is read.
            moved = session.move_file(config.export_path, name, TAKEN)
            self.stats.taken += 1
            self.stats.taken_names.append(name)
            taken_folder = posixpath.join(config.export_path, TAKEN)
            moved_name = posixpath.basename(moved)
            data = session.read_file(taken_folder, moved_name, MAX_ORDER_BYTES)
            self._answer(config, name, data)

    def _answer(self, config: ConnectorConfig, name: str, data: bytes) -> None:
        checked = check_order(data)
        if checked.export_id is None:
            self.stats.unreadable += 1
            log.error(
                "%s: %s has no export id, cannot answer it: %s",
                config.org_id,
                name,
                checked.problems[0][0],
            )
            return
        decision: Decision
        if checked.problems:
            decision = invalid_order(checked.export_id, checked.problems)
        elif checked.org_id != config.org_id:
            decision = invalid_order(
                checked.export_id,
                [(f"org_id {checked.org_id!r} is not this folder's org {config.org_id}", None)],
            )
        else:
            decision = decide(self._policy, checked.export_id, checked.draft_order_id)
        received_at = self._wall_clock()
        if decision.verdict is Verdict.SILENT:
            self.stats.silent += 1
            log.info("%s: took %s, staying silent (no ack)", config.org_id, name)
            return
        item = PendingAck(
            due=self._clock() + self._policy.delay_seconds,
            org_id=config.org_id,
            name=ack_name(checked.export_id),
            data=ack_document(decision, config.org_id, received_at),
            verdict=decision.verdict,
        )
        log.info(
            "%s: took %s, %s%s, ack in %.1f s",
            config.org_id,
            name,
            "accepted as " if decision.verdict is Verdict.ACCEPT else "rejected: ",
            decision.erp_order_number or decision.message,
            self._policy.delay_seconds,
        )
        self._pending.append(item)

    def _write_ack(self, config: ConnectorConfig, item: PendingAck) -> None:
        session = self._sessions.session_for(config)
        folder = config.ack_path.rstrip("/") or "/"
        parent, last = posixpath.split(folder)
        # The ack folder itself must be a real folder: through a symlink the ack would land
        # somewhere else, so the org gets no ack at all rather than one written elsewhere.
        kinds = {e.name: e.kind for e in session.list_entries(parent or "/")}
        kind = kinds.get(last)
        if kind != "dir":
            raise OrderflowError(
                f"ack folder {folder} is {'missing' if kind is None else 'a ' + str(kind)}, "
                "not a real folder; writing nothing"
            )
        if session.exists(folder, item.name):
            log.info("%s: ack %s already there", config.org_id, item.name)
            return
        # write_file: temp dot-file then rename, no symlink followed at either name.
        path = session.write_file(folder, item.name, item.data)
        if item.verdict is Verdict.ACCEPT:
            self.stats.accepted += 1
        else:
            self.stats.rejected += 1
        log.info("%s: wrote %s", config.org_id, path)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sessions.close()
