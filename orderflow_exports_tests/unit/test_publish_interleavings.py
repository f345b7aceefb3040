"""No interleaving of crashes, stalls, lost replies, retries and ERP pickups makes a second copy.

Several workers (each one run of the same partition, in its own thread) export one draft through
the real ExportService, the real SQLite ledger and the real local dropzone. Every ledger call and
every dropzone step (publish, temp written, claim taken, exists, remove_temp, ...) is a
checkpoint where the worker waits until the schedule lets it go on; hypothesis draws the
schedule. A worker can be stepped, force-terminated (declared dead while it may still go on: a
stall), crashed (declared dead and never stepped again), or lose the reply of its rename; the
simulated ERP takes away every file that has its final name at any point.

Checked after every event and at the end: at most one copy ever got its final name. At the end a
fresh run settles what is left: every row is SENT or FAILED with a reason, and exactly one copy
was delivered, the one of the SENT row.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.application.export_service import ExportService
from orderflow_exports.application.publishing import ExportSettings
from orderflow_exports.demo import SampleDraft, insert_drafts, local_connector, prepare_database
from orderflow_exports.domain.errors import (
    AlreadyInFlight,
    ExportError,
    OrderflowError,
    RenameOutcomeUnknown,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus

WORKERS = 3
# Only a guard against a deadlock of the harness itself.
HANG_GUARD_SECONDS = 30.0
_example_ids = itertools.count()


class Killed(BaseException):
    """Ends a parked worker thread once its example is over (never seen by the service)."""


@dataclass
class Worker:
    """One run exporting the draft, advanced one checkpoint at a time by the schedule."""

    run_id: str
    lose_reply: bool
    cv: threading.Condition
    parked: bool = False
    done: bool = False
    go: bool = False
    killed: bool = False
    declared_dead: bool = False
    crashed: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def checkpoint(self) -> None:
        with self.cv:
            self.parked = True
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.go or self.killed)
            self.go = False
            self.parked = False
            if self.killed:
                raise Killed

    @property
    def active(self) -> bool:
        return not self.done and not self.declared_dead


class CheckpointedLedger:
    """The real ledger; each call waits for the worker's turn first."""

    def __init__(self, real: SqlExportLedger, worker: Worker) -> None:
        self._real, self._worker = real, worker

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._worker.checkpoint()
            return method(*args, **kwargs)

        return call


class CheckpointedDropzone:
    """The real local dropzone, with the worker's turn awaited at every step of a publish."""

    def __init__(self, worker: Worker) -> None:
        self._real = LocalDropzoneSession()
        self._worker = worker

    def publish(
        self,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        worker = self._worker
        assert before_rename is not None

        def claim_then_rename() -> None:
            worker.checkpoint()  # the temp file is complete
            before_rename()
            worker.checkpoint()  # the claim is taken, the rename not yet issued

        worker.checkpoint()
        path = self._real.publish(folder, final_name, source, expected_size, claim_then_rename)
        if worker.lose_reply:
            worker.checkpoint()  # renamed; the reply is on its way and gets lost
            raise RenameOutcomeUnknown(f"the reply to the rename of {final_name} was lost")
        return path

    def exists(self, folder: str, name: str) -> bool:
        self._worker.checkpoint()
        return self._real.exists(folder, name)

    def remove_temp(self, folder: str, final_name: str) -> bool:
        self._worker.checkpoint()
        return self._real.remove_temp(folder, final_name)

    def sweep_stale_temps(
        self,
        folder: str,
        older_than: timedelta,
        keep: Callable[[str], bool] | None = None,
    ) -> list[str]:
        self._worker.checkpoint()
        return self._real.sweep_stale_temps(folder, older_than, keep)

    def close(self) -> None:
        """Nothing to release."""


class OneDropzone:
    """The ``DropzoneConnector`` port handing out the worker's dropzone."""

    def __init__(self, session: CheckpointedDropzone) -> None:
        self._session = session

    def session_for(self, config: ConnectorConfig) -> Any:
        return self._session

    def discard(self, config: ConnectorConfig) -> None:
        """A local folder never breaks a connection."""

    def close(self) -> None:
        """Nothing to release."""


class Liveness:
    """A run is active while its worker has neither ended nor been declared dead."""

    def __init__(self, workers: dict[str, Worker]) -> None:
        self._workers = workers

    def is_active(self, run_id: str) -> bool:
        worker = self._workers.get(run_id)
        return worker is not None and worker.active


@dataclass
class World:
    """One example: a draft of its own org, its dropzone, the workers and what the ERP took."""

    engine: Engine
    config: ConnectorConfig
    ref: DraftRef
    spool_root: Path
    store_root: Path
    cv: threading.Condition = field(default_factory=threading.Condition)
    workers: dict[str, Worker] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)

    @property
    def outbox(self) -> Path:
        return Path(self.config.export_path)

    def final_files(self) -> set[str]:
        return {p.name for p in self.outbox.iterdir() if not p.name.startswith(".")}

    def copies(self) -> set[str]:
        """Every file that ever got its final name: taken by the ERP or still there."""
        return self.delivered | self.final_files()

    def erp_pickup(self) -> None:
        for name in self.final_files():
            (self.outbox / name).unlink()
            self.delivered.add(name)

    def start(self, lose_reply: bool) -> Worker:
        worker = Worker(f"run-{len(self.workers)}", lose_reply, self.cv)
        self.workers[worker.run_id] = worker
        service = ExportService(
            drafts=SqlDraftSource(self.engine),
            configs=SqlConnectorConfigs(self.engine),
            ledger=CheckpointedLedger(SqlExportLedger(self.engine), worker),  # type: ignore[arg-type]
            dropzones=OneDropzone(CheckpointedDropzone(worker)),
            store=LocalExportStore(self.store_root),
            settings=ExportSettings(spool_dir=self.spool_root / worker.run_id),
            liveness=Liveness(self.workers),
        )

        def body() -> None:
            try:
                service.export(self.ref, run_id=worker.run_id)
            except Killed:
                pass
            except OrderflowError as exc:
                worker.error = exc
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                worker.error = exc
            finally:
                with self.cv:
                    worker.done = True
                    self.cv.notify_all()

        worker.thread = threading.Thread(target=body, daemon=True)
        worker.thread.start()
        self._wait_parked(worker)
        return worker

    def step(self, worker: Worker) -> None:
        if worker.done or worker.crashed:
            return
        with self.cv:
            worker.go = True
            self.cv.notify_all()
        self._wait_parked(worker)

    def _wait_parked(self, worker: Worker) -> None:
        with self.cv:
            assert self.cv.wait_for(
                lambda: (worker.parked and not worker.go) or worker.done, HANG_GUARD_SECONDS
            ), "a worker neither reached a checkpoint nor ended"

    def finish(self, worker: Worker) -> None:
        for _ in range(500):
            if worker.done:
                return
            self.step(worker)
        raise AssertionError(f"{worker.run_id} did not end")

    def end(self) -> None:
        for worker in self.workers.values():
            with self.cv:
                worker.killed = True
                self.cv.notify_all()
        for worker in self.workers.values():
            assert worker.thread is not None
            worker.thread.join(HANG_GUARD_SECONDS)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("interleavings") / "orderflow.db"
    engine = make_engine(f"sqlite:///{path}")
    prepare_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dropzones")


def _new_world(engine: Engine, root: Path) -> World:
    n = next(_example_ids)
    org_id, draft_id = f"org{n}", f"D-{n}"
    config = local_connector(org_id, root)
    SqlConnectorConfigs(engine).upsert(config)
    insert_drafts(engine, [SampleDraft(org_id, draft_id, lines=3)])
    return World(engine, config, DraftRef(org_id, draft_id), root / "spool", root / "store")


EVENTS = st.one_of(
    st.tuples(st.just("step"), st.integers(0, WORKERS - 1)),
    st.tuples(st.just("step"), st.integers(0, WORKERS - 1)),
    st.tuples(st.just("step"), st.integers(0, WORKERS - 1)),
    st.tuples(st.just("start"), st.booleans()),
    st.tuples(st.just("terminate"), st.integers(0, WORKERS - 1)),
    st.tuples(st.just("crash"), st.integers(0, WORKERS - 1)),
    st.tuples(st.just("pickup"), st.just(0)),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first_loses_reply=st.booleans(), events=st.lists(EVENTS, max_size=60))
def test_no_interleaving_delivers_a_second_copy(
    engine: Engine, root: Path, first_loses_reply: bool, events: list[tuple[str, Any]]
) -> None:
    world = _new_world(engine, root)
    workers = [world.start(first_loses_reply)]
    try:
        for kind, arg in events:
            if kind == "start" and len(workers) < WORKERS:
                workers.append(world.start(bool(arg)))
            elif kind == "pickup":
                world.erp_pickup()
            elif isinstance(arg, int) and arg < len(workers):
                worker = workers[arg]
                if kind == "step":
                    world.step(worker)
                elif kind == "terminate":
                    worker.declared_dead = True  # force-terminated; it may still go on
                elif kind == "crash":
                    worker.declared_dead = worker.crashed = True
            assert len(world.copies()) <= 1, world.copies()

        for worker in workers:  # everything that is not dead goes on to its end
            if not worker.crashed:
                world.finish(worker)
            assert len(world.copies()) <= 1, world.copies()
        settler = world.start(lose_reply=False)  # a later run of the same partition
        world.finish(settler)
        world.erp_pickup()
        _check_settled(world, workers, settler)
    finally:
        world.end()


def _check_settled(world: World, workers: list[Worker], settler: Worker) -> None:
    assert settler.error is None, repr(settler.error)
    for worker in workers:
        assert worker.error is None or isinstance(worker.error, ExportError | AlreadyInFlight), (
            repr(worker.error)
        )
    rows = [
        r
        for r in SqlExportLedger(world.engine).list(org_id=world.ref.org_id, limit=100)
        if r.draft_order_id == world.ref.draft_order_id
    ]
    assert rows
    for row in rows:
        assert row.status in (ExportStatus.SENT, ExportStatus.FAILED), row
        if row.status is ExportStatus.FAILED:
            assert row.error_code and row.error_message, row
    [sent] = [r for r in rows if r.status is ExportStatus.SENT]
    assert world.delivered == {sent.filename}
    # Crashed workers are still parked here: a temp file they left must have been taken away.
    assert not list(world.outbox.iterdir())
