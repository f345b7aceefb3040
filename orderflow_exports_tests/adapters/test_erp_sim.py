"""The simulated ERP over the real dropzone sessions (local folders and the private sshd).

Its acks go through the real ack pass, so the contract's ack format is checked end to end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.ack_decisions import ERP_REJECTED
from orderflow_exports.domain.ack_files import parse_ack
from orderflow_exports.domain.ports import DropzoneSession
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports.erp_sim.decisions import Policy, ack_name
from orderflow_exports.erp_sim.simulator import TAKEN, ErpSimulator
from orderflow_exports_tests.adapters.test_ack_processing import (
    Zone,
    files,
    make_export,
    processor,
)
from orderflow_exports_tests.support.documents import render


class OneSession:
    """The ``DropzoneConnector`` port over the fixture's one real session."""

    def __init__(self, session: DropzoneSession) -> None:
        self.session = session
        self.discarded = 0

    def session_for(self, config: ConnectorConfig) -> DropzoneSession:
        return self.session

    def discard(self, config: ConnectorConfig) -> None:
        self.discarded += 1

    def close(self) -> None:
        """The fixture closes the session."""


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulator(
    zone: Zone, configs: list[ConnectorConfig], policy: Policy, clock: Clock | None = None
) -> ErpSimulator:
    return ErpSimulator(lambda: configs, OneSession(zone.session), policy, clock=clock or Clock())


def drop_order(config: ConnectorConfig, export_id: str, draft_id: str = "D-1") -> str:
    data, _ = render(SampleDraft(config.org_id, draft_id), export_id=export_id)
    name = f"{config.org_id}_{draft_id}_20261126T101530Z_{export_id}.json"
    (Path(config.export_path) / name).write_bytes(data)
    return name


def test_accepted_order_is_taken_and_acked_for_the_ack_pass(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    name = drop_order(config, export.id)
    # The exporter's temp files and other names are never touched.
    (Path(config.export_path) / f".{name}.tmp").write_bytes(b"partial")
    (Path(config.export_path) / "readme.txt").write_bytes(b"x")
    sim = simulator(zone, [config], Policy(seed=3))

    sim.poll()

    assert files(config.export_path) == sorted([f".{name}.tmp", "readme.txt"])
    assert files(config.export_path, TAKEN) == [name]
    assert files(config.ack_path) == [ack_name(export.id)]
    ack = parse_ack((Path(config.ack_path) / ack_name(export.id)).read_bytes())
    assert ack.status == "ACKED" and ack.erp_order_number
    assert (sim.stats.taken, sim.stats.accepted) == (1, 1)

    processor(ledger).process_folder(config, zone.session)
    row = ledger.get(export.id)
    assert row is not None
    assert (row.status, row.erp_order_number) == (ExportStatus.ACKED, ack.erp_order_number)
    sim.poll()  # nothing new: nothing taken or written again
    assert sim.stats.taken == 1 and files(config.ack_path) == []


def test_rejected_order_becomes_erp_rejected(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    drop_order(config, export.id)
    sim = simulator(zone, [config], Policy(reject_ratio=1.0))
    sim.poll()
    processor(ledger).process_folder(config, zone.session)
    row = ledger.get(export.id)
    assert row is not None
    assert (row.status, row.error_code) == (ExportStatus.FAILED, ERP_REJECTED)
    assert "blocked" in (row.error_message or "")


def test_silent_order_gets_no_ack(zone: Zone) -> None:
    config = zone.config("org-a")
    name = drop_order(config, "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f")
    sim = simulator(zone, [config], Policy(silent_ratio=1.0))
    sim.poll()
    assert files(config.export_path, TAKEN) == [name]
    assert files(config.ack_path) == []
    assert sim.stats.silent == 1 and sim.pending == 0


def test_ack_waits_for_the_delay(zone: Zone) -> None:
    config = zone.config("org-a")
    export_id = "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f"
    drop_order(config, export_id)
    clock = Clock()
    sim = simulator(zone, [config], Policy(delay_seconds=30), clock)
    sim.poll()
    assert files(config.ack_path) == [] and sim.pending == 1
    clock.now += 29
    sim.flush()
    assert files(config.ack_path) == []
    clock.now += 1
    sim.flush()
    assert files(config.ack_path) == [ack_name(export_id)] and sim.pending == 0


def test_order_not_matching_the_schema_is_rejected_with_the_reason(zone: Zone) -> None:
    config = zone.config("org-a")
    export_id = "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f"
    name = drop_order(config, export_id)
    path = Path(config.export_path) / name
    document = json.loads(path.read_bytes())
    document["lines"][0]["unit_price"] = 1.5
    path.write_text(json.dumps(document))
    # An order of another org in this org's folder is refused too.
    other = "7f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f"
    data, _ = render(SampleDraft("org-b", "D-2"), export_id=other)
    (Path(config.export_path) / "org-b_D-2.json").write_bytes(data)
    sim = simulator(zone, [config], Policy())

    sim.poll()

    schema_ack = parse_ack((Path(config.ack_path) / ack_name(export_id)).read_bytes())
    assert schema_ack.status == "FAILED"
    assert [(e.code, e.line_no) for e in schema_ack.errors] == [("SCHEMA", 1)]
    assert "unit_price" in (schema_ack.message or "")
    foreign = parse_ack((Path(config.ack_path) / ack_name(other)).read_bytes())
    assert foreign.status == "FAILED" and "org-b" in (foreign.message or "")


def test_unreadable_order_is_taken_and_logged_without_an_ack(
    zone: Zone, caplog: pytest.LogCaptureFixture
) -> None:
    config = zone.config("org-a")
    (Path(config.export_path) / "garbage.json").write_bytes(b"{not json")
    sim = simulator(zone, [config], Policy())
    with caplog.at_level("INFO", logger="orderflow_exports.erp_sim"):
        sim.poll()
    assert files(config.export_path, TAKEN) == ["garbage.json"]
    assert files(config.ack_path) == []
    assert sim.stats.unreadable == 1
    assert "garbage.json has no export id" in caplog.text


def test_symlinked_ack_folder_gets_nothing_written_through_it(zone: Zone, tmp_path: Path) -> None:
    config = zone.config("org-a")
    export_id = "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f"
    drop_order(config, export_id)
    elsewhere = zone.root / "elsewhere"
    elsewhere.mkdir()
    os.rmdir(config.ack_path)
    os.symlink(elsewhere, config.ack_path)
    sim = simulator(zone, [config], Policy())

    sim.poll()

    assert list(elsewhere.iterdir()) == []
    assert sim.stats.org_errors == 1 and sim.pending == 1  # kept, written once the folder is real
    os.unlink(config.ack_path)
    os.mkdir(config.ack_path)
    sim.poll()
    assert files(config.ack_path) == [ack_name(export_id)]
    assert list(elsewhere.iterdir()) == []


def test_planted_symlinks_at_the_ack_names_are_never_written_through(zone: Zone) -> None:
    config = zone.config("org-a")
    export_id = "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f"
    drop_order(config, export_id)
    victim = zone.root / "victim.txt"
    victim.write_bytes(b"precious")
    os.symlink(victim, Path(config.ack_path) / f".{ack_name(export_id)}.tmp")
    sim = simulator(zone, [config], Policy())

    sim.poll()

    assert victim.read_bytes() == b"precious"
    written = Path(config.ack_path) / ack_name(export_id)
    assert not written.is_symlink()
    assert parse_ack(written.read_bytes()).export_id == export_id


def test_symlinked_taken_folder_is_refused(zone: Zone) -> None:
    config = zone.config("org-a")
    name = drop_order(config, "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f")
    elsewhere = zone.root / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, Path(config.export_path) / TAKEN)
    sim = simulator(zone, [config], Policy())
    sim.poll()
    assert list(elsewhere.iterdir()) == []
    assert files(config.export_path) == [name]  # left in the inbox
    assert sim.stats.org_errors == 1 and files(config.ack_path) == []


def test_one_orgs_broken_folder_does_not_stop_another(zone: Zone) -> None:
    broken = zone.config("org-a")
    good = zone.config("org-b")
    os.rmdir(broken.export_path)
    export_id = "6f1c2b9e-0d3a-4c5b-8e7f-1a2b3c4d5e6f"
    drop_order(good, export_id, "D-2")
    sim = simulator(zone, [broken, good], Policy())
    sim.poll()
    assert sim.stats.org_errors == 1
    assert files(good.ack_path) == [ack_name(export_id)]
