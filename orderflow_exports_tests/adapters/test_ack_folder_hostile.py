"""Ack folders the ERP (or someone on its server) controls: hostile and broken contents.

Local folders and SFTP to the real sshd; the ledger on SQLite and PostgreSQL. Permission cases
run the pass in a child process without root's privileges (root ignores file modes).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.local_folders import resolve_local_folders
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.application.acks.folder import ERROR_NOTE_SUFFIX
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.demo import local_connector, prepare_database
from orderflow_exports.domain.connector_rules import LocalFolders
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.ports import DropzoneSession, FolderEntry
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.adapters.test_ack_processing import (
    DAY,
    NOW,
    OneSession,
    Zone,
    ack,
    files,
    make_export,
    processor,
)
from orderflow_exports_tests.support.components import require_component
from orderflow_exports_tests.support.sshd import SshdServer

SECRET = "TOP-SECRET-CONTENT-0123"


def tree(root: Path) -> dict[str, Any]:
    """Every entry under ``root`` with its type and content (symlinks as their target)."""
    found: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_dir():
            found[key] = ("dir",)
        elif path.is_fifo():
            found[key] = ("fifo",)
        else:
            found[key] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return found


def all_notes(config: ConnectorConfig) -> str:
    error = Path(config.ack_path) / "error"
    if not error.is_dir():
        return ""
    return "".join(
        p.read_text("utf-8", errors="replace")
        for p in error.iterdir()
        if p.name.endswith(ERROR_NOTE_SUFFIX)
    )


# --- 5: a missing ack folder ---------------------------------------------------------------------


def test_missing_ack_folder_is_an_error_and_no_export_times_out(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    config = zone.config("org-a")
    overdue = make_export(ledger, "org-a", "D-1", sent_at=NOW - 2 * DAY)
    Path(config.ack_path).rmdir()

    summary = processor(ledger).process_folder(config, zone.session)

    assert summary.failure is not None and "does not exist" in summary.failure
    assert summary.failure_code == ErrorCode.CONFIG
    assert not summary.deadline_checked and summary.timeouts == []
    assert ledger.get(overdue.id) == overdue
    assert "no ack deadline applied" in summary.describe()


def test_ack_folder_that_is_a_file_is_an_error(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    overdue = make_export(ledger, "org-a", "D-1", sent_at=NOW - 2 * DAY)
    Path(config.ack_path).rmdir()
    Path(config.ack_path).write_text("not a folder")

    summary = processor(ledger).process_folder(config, zone.session)

    assert summary.failure is not None and summary.timeouts == []
    assert ledger.get(overdue.id) == overdue


# --- 6: symlinks -------------------------------------------------------------------------------


class SwapAfterListing:
    """Swaps a listed regular file for a symlink right after the listing (the race, at the seam)."""

    def __init__(self, inner: DropzoneSession, name: str, target: Path) -> None:
        self._inner = inner
        self._name = name
        self._target = target

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)

    def list_entries(self, folder: str) -> list[FolderEntry]:
        entries = self._inner.list_entries(folder)
        path = Path(folder) / self._name
        path.unlink()
        path.symlink_to(self._target)
        return entries


def secret_file(root: Path) -> Path:
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.json"
    # JSON whose values an error reason would quote ("... is not a UUID").
    secret.write_text(json.dumps({"export_id": SECRET, "status": SECRET}), encoding="utf-8")
    return secret


def test_ack_swapped_for_a_symlink_is_never_followed(
    zone: Zone, ledger: SqlExportLedger, caplog: pytest.LogCaptureFixture
) -> None:
    config = zone.config("org-a")
    secret = secret_file(zone.root)
    before = tree(secret.parent)
    zone.drop(config, "ack.json", b'{"export_id": "not yet"}')
    session = SwapAfterListing(zone.session, "ack.json", secret)
    caplog.set_level(logging.DEBUG)

    summary = processor(ledger).process_folder(config, session)  # type: ignore[arg-type]

    assert [(o.file_name, o.kind) for o in summary.outcomes] == [("ack.json", "skipped")]
    assert "symbolic link" in summary.outcomes[0].reason
    assert SECRET not in all_notes(config)
    assert SECRET not in caplog.text
    assert SECRET not in repr(summary)
    assert (Path(config.ack_path) / "ack.json").is_symlink()  # left where it was
    assert tree(secret.parent) == before


def test_listed_symlinks_are_skipped_and_never_read(
    zone: Zone, ledger: SqlExportLedger, caplog: pytest.LogCaptureFixture
) -> None:
    config = zone.config("org-a")
    secret = secret_file(zone.root)
    (Path(config.ack_path) / "link.json").symlink_to(secret)
    caplog.set_level(logging.DEBUG)

    summary = processor(ledger).process_folder(config, zone.session)

    assert summary.outcomes == []
    assert summary.skipped == [("link.json", "a symbolic link (never followed)")]
    assert SECRET not in caplog.text and SECRET not in all_notes(config)
    assert (Path(config.ack_path) / "link.json").is_symlink()


@pytest.mark.parametrize("sub", ["error", "processed"])
def test_symlinked_subfolder_is_refused(zone: Zone, ledger: SqlExportLedger, sub: str) -> None:
    config = zone.config("org-a")
    outside = zone.root / "outside"
    outside.mkdir()
    (Path(config.ack_path) / sub).symlink_to(outside, target_is_directory=True)
    export = make_export(ledger, "org-a", "D-1")
    overdue = make_export(ledger, "org-a", "D-2", sent_at=NOW - 2 * DAY)
    zone.drop(config, "good.json", ack(export.id))
    zone.drop(config, "bad.json", b"{not json")

    summary = processor(ledger).process_folder(config, zone.session)

    assert summary.failure is not None and "symbolic link" in summary.failure
    assert summary.failure_code == ErrorCode.CONFIG
    assert list(outside.iterdir()) == []
    assert files(config.ack_path) == ["bad.json", "good.json"]
    assert ledger.get(export.id) == export and ledger.get(overdue.id) == overdue


@pytest.mark.parametrize("sub", ["error", "processed"])
def test_session_refuses_to_move_or_write_through_a_symlinked_subfolder(
    zone: Zone, sub: str
) -> None:
    config = zone.config("org-a")
    outside = zone.root / "outside"
    outside.mkdir()
    (Path(config.ack_path) / sub).symlink_to(outside, target_is_directory=True)
    zone.drop(config, "a.json", b"{}")

    with pytest.raises(ExportError) as moved:
        zone.session.move_file(config.ack_path, "a.json", sub)
    with pytest.raises(ExportError) as written:
        zone.session.write_file(str(Path(config.ack_path) / sub), "a.json.error.txt", b"x")

    assert moved.value.code == written.value.code == ErrorCode.CONFIG
    assert list(outside.iterdir()) == []
    assert files(config.ack_path) == ["a.json"]


def test_note_never_writes_through_a_planted_symlink(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    secret = secret_file(zone.root)
    before = tree(secret.parent)
    error = Path(config.ack_path) / "error"
    error.mkdir()
    # Someone on the ERP's server plants links where our note and its temp file will go.
    (error / "bad.json.error.txt").symlink_to(secret)
    (error / ".bad.json.error.txt.tmp").symlink_to(secret)
    zone.drop(config, "bad.json", b"{not json")

    summary = processor(ledger).process_folder(config, zone.session)

    assert [o.kind for o in summary.outcomes] == ["rejected"]
    assert tree(secret.parent) == before
    note = error / "bad.json.error.txt"
    assert not note.is_symlink() and "not valid JSON" in note.read_text("utf-8")


def test_notes_quote_only_a_short_escaped_excerpt(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    hostile = "\x1b]0;owned\x07" + "A" * 5000
    zone.drop(config, "bad\x1b[2J.json", json.dumps({"export_id": hostile}).encode())

    summary = processor(ledger).process_folder(config, zone.session)

    [outcome] = summary.rejected
    note = all_notes(config)
    assert "A" * 300 not in note and "\x1b" not in note and "\x07" not in note
    assert all(" " <= ch <= "~" or ch == "\n" for ch in note)
    assert len(outcome.reason) <= 400


# --- 7: acks still being written ----------------------------------------------------------------


def real_clock_processor(ledger: SqlExportLedger, **settings: Any) -> AckProcessor:
    """File times are real: settle against the real clock."""
    return AckProcessor(ledger, AckSettings(settle_seconds=120, **settings))


def test_half_written_ack_waits_and_is_applied_once_complete(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    config = zone.config("org-a")
    export = make_export(ledger, "org-a", "D-1")
    overdue = make_export(ledger, "org-a", "D-2", sent_at=datetime.now(UTC) - 2 * DAY)
    body = json.dumps(ack(export.id)).encode()
    path = zone.drop(config, "ack.json", body[:20])  # the ERP is still writing
    pass_ = real_clock_processor(ledger)

    first = pass_.process_folder(config, zone.session)

    assert [o.kind for o in first.outcomes] == ["waiting"]
    assert files(config.ack_path) == ["ack.json"] and files(config.ack_path, "error") == []
    assert first.deferred == 1 and not first.deadline_checked  # the ack may answer D-2
    assert ledger.get(overdue.id) == overdue

    path.write_bytes(body)
    second = pass_.process_folder(config, zone.session, memory=first.memory)

    assert [o.kind for o in second.outcomes] == ["applied"]
    assert ledger.get(export.id).status is ExportStatus.ACKED  # type: ignore[union-attr]
    assert second.deadline_checked


def test_malformed_ack_unchanged_across_two_passes_goes_to_error(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    config = zone.config("org-a")
    zone.drop(config, "bad.json", b'{"export_id": ')
    pass_ = real_clock_processor(ledger)

    first = pass_.process_folder(config, zone.session)
    second = pass_.process_folder(config, zone.session, memory=first.memory)

    assert [o.kind for o in first.outcomes] == ["waiting"]
    assert [o.kind for o in second.outcomes] == ["rejected"]
    assert files(config.ack_path, "error") == ["bad.json", "bad.json.error.txt"]


def test_old_malformed_ack_goes_to_error_at_once(zone: Zone, ledger: SqlExportLedger) -> None:
    config = zone.config("org-a")
    path = zone.drop(config, "bad.json", b"")
    old = time.time() - 3600
    os.utime(path, (old, old))

    summary = real_clock_processor(ledger).process_folder(config, zone.session)

    assert [o.reject_code for o in summary.rejected] == ["MALFORMED"]


# --- 8: names and entry types ------------------------------------------------------------------


def test_upper_case_acks_are_applied_and_odd_entries_logged_once(
    zone: Zone, ledger: SqlExportLedger, caplog: pytest.LogCaptureFixture
) -> None:
    config = zone.config("org-a")
    exports = [make_export(ledger, "org-a", f"D-{n}") for n in range(3)]
    for name, export in zip(("A.JSON", "b.Json", "c.json"), exports, strict=True):
        zone.drop(config, name, ack(export.id))
    acks = Path(config.ack_path)
    (acks / "folder.json").mkdir()
    os.mkfifo(acks / "pipe.json")
    (acks / "link.json").symlink_to(acks / "c.json")
    (acks / "readme.txt").write_text("hello")
    (acks / ".hidden.json").write_text("{")
    caplog.set_level(logging.INFO)

    first = processor(ledger).process_folder(config, zone.session)

    assert sorted(o.file_name for o in first.applied) == ["A.JSON", "b.Json", "c.json"]
    assert sorted(first.skipped) == [
        ("folder.json", "a folder"),
        ("link.json", "a symbolic link (never followed)"),
        ("pipe.json", "a FIFO"),
        ("readme.txt", "not named *.json"),
    ]
    for name in ("folder.json", "pipe.json", "link.json", "readme.txt"):
        assert (
            sum(name in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
            == 1
        )
    assert ".hidden.json" not in caplog.text

    caplog.clear()
    second = processor(ledger).process_folder(config, zone.session, memory=first.memory)
    assert second.skipped == [] and "skipping" not in caplog.text
    # Removed and back again: reported again.
    (acks / "readme.txt").unlink()
    third = processor(ledger).process_folder(config, zone.session, memory=second.memory)
    (acks / "readme.txt").write_text("hello")
    fourth = processor(ledger).process_folder(config, zone.session, memory=third.memory)
    assert fourth.skipped == [("readme.txt", "not named *.json")]


# --- connector rules ---------------------------------------------------------------------------


def test_org_whose_config_breaks_the_rules_is_skipped_alone(
    zone: Zone, ledger: SqlExportLedger
) -> None:
    good = zone.config("org-a")
    shared = replace(zone.config("org-b"), ack_path=zone.config("org-b").export_path)
    export_a = make_export(ledger, "org-a", "D-1")
    overdue_b = make_export(ledger, "org-b", "D-2", sent_at=NOW - 2 * DAY)
    zone.drop(good, "ack.json", ack(export_a.id))
    zone.drop(shared, "order-looking.json", b"{not json")
    before = tree(Path(shared.ack_path))

    summaries = processor(ledger).process_all([good, shared], OneSession(zone.session))

    by_org = {s.org_id: s for s in summaries}
    assert by_org["org-b"].failure_code == ErrorCode.CONFIG
    assert "same folder" in (by_org["org-b"].failure or "")
    assert tree(Path(shared.ack_path)) == before
    assert ledger.get(overdue_b.id) == overdue_b
    assert ledger.get(export_a.id).status is ExportStatus.ACKED  # type: ignore[union-attr]


# --- 4: one org's broken folder or secret never holds up the others -----------------------------

_CHILD_PASS = """
import json, sys
from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.domain.records import ConnectorConfig

url, raw = sys.argv[1], json.loads(sys.argv[2])
configs = [ConnectorConfig(**c) for c in raw]
processor = AckProcessor(SqlExportLedger(make_engine(url)), AckSettings(settle_seconds=0))
summaries = processor.process_all(configs, connector_factory=PooledDropzoneConnector)
print(json.dumps([
    {"org": s.org_id, "failure": s.failure, "code": s.failure_code,
     "applied": [o.file_name for o in s.applied], "deadline": s.deadline_checked}
    for s in summaries
]))
"""


def _unprivileged(argv: list[str]) -> list[str]:
    """``argv`` without the capabilities that let root ignore file modes.

    Still root (so it can read the checkout, wherever it lies), but without
    ``CAP_DAC_OVERRIDE``/``CAP_DAC_READ_SEARCH`` a folder of mode 000 is unreadable to it.
    """
    if os.geteuid() != 0:
        return argv
    setpriv = "/usr/bin/setpriv"
    require_component(os.path.exists(setpriv), "setpriv (util-linux) is not installed")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", *argv]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database for the child process, on SQLite and PostgreSQL."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_database")
        folder = None
    else:
        folder = Path(tempfile.mkdtemp(prefix="ack-shared-db-"))
        url = f"sqlite:///{folder / 'orderflow.db'}"
    engine = make_engine(url)
    prepare_database(engine)
    engine.dispose()
    try:
        yield url
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # a real child process
def test_unreadable_ack_folder_fails_only_its_org(shared_database: str) -> None:
    ledger = SqlExportLedger(make_engine(shared_database))
    root = Path(tempfile.mkdtemp(prefix="ack-perm-"))
    try:
        root.chmod(0o755)
        configs = []
        for org in ("org-a", "org-b"):
            (root / org / "acks").mkdir(parents=True)
            (root / org / "out").mkdir()
            configs.append(
                ConnectorConfig(org, "local", str(root / org / "out"), str(root / org / "acks"))
            )
        export_b = make_export(ledger, "org-b", "D-B")
        overdue_a = make_export(ledger, "org-a", "D-A", sent_at=datetime.now(UTC) - 2 * DAY)
        (root / "org-b" / "acks" / "ack.json").write_text(json.dumps(ack(export_b.id)))
        (root / "org-a" / "acks").chmod(0o000)  # org-a's folder: nobody may read it
        raw = json.dumps(
            [
                {
                    "org_id": c.org_id,
                    "transport": "local",
                    "export_path": c.export_path,
                    "ack_path": c.ack_path,
                }
                for c in configs
            ]
        )

        child = subprocess.run(
            _unprivileged([sys.executable, "-c", _CHILD_PASS, shared_database, raw]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert child.returncode == 0, child.stderr[-2000:]
        by_org = {s["org"]: s for s in json.loads(child.stdout.strip().splitlines()[-1])}
        assert by_org["org-a"]["code"] == ErrorCode.PERMISSION, by_org
        assert "cannot read the ack folder" in by_org["org-a"]["failure"]
        assert not by_org["org-a"]["deadline"]
        assert by_org["org-b"] == {
            "org": "org-b",
            "failure": None,
            "code": None,
            "applied": ["ack.json"],
            "deadline": True,
        }
        assert ledger.get(export_b.id).status is ExportStatus.ACKED  # type: ignore[union-attr]
        assert ledger.get(overdue_a.id) == overdue_a  # not timed out while unreadable
    finally:
        (root / "org-a" / "acks").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_fifo_secret_fails_only_its_org(
    zone: Zone, ledger: SqlExportLedger, sshd_server: SshdServer, tmp_path: Path
) -> None:
    # Inside org-b's own secret folder, so that only the file type is wrong.
    (sshd_server.secrets_root / "org-b").mkdir(mode=0o700, parents=True, exist_ok=True)
    fifo = sshd_server.secrets_root / "org-b" / f"key-{tmp_path.name}.fifo"
    os.mkfifo(fifo, 0o600)  # reading it would wait for a writer forever
    good = zone.config("org-a")
    stuck = sshd_server.connector_config(
        "org-b", "/srv/out", "/srv/acks", private_key_ref=f"file:{fifo}"
    )
    export = make_export(ledger, "org-a", "D-1")
    zone.drop(good, "ack.json", ack(export.id))
    connector = OneSession(zone.session)

    def session_for(config: ConnectorConfig) -> DropzoneSession:
        if config.transport == "sftp":
            return PooledDropzoneConnector().session_for(config)
        return zone.session

    connector.session_for = session_for  # type: ignore[method-assign]
    summaries = processor(ledger, org_time_budget_seconds=20).process_all([stuck, good], connector)

    by_org = {s.org_id: s for s in summaries}
    assert by_org["org-b"].failure_code == ErrorCode.CONFIG
    assert "not a regular file" in (by_org["org-b"].failure or "")
    assert [o.file_name for o in by_org["org-a"].applied] == ["ack.json"]


@pytest.fixture
def stopped_sshd(sshd_server: SshdServer) -> Iterator[SshdServer]:
    """The shared sshd frozen with SIGSTOP (connections are accepted, nothing answers)."""
    os.kill(sshd_server.pid, signal.SIGSTOP)
    try:
        yield sshd_server
    finally:
        os.kill(sshd_server.pid, signal.SIGCONT)


def test_hanging_sftp_org_is_abandoned_and_the_next_org_is_served(
    ledger: SqlExportLedger, stopped_sshd: SshdServer, tmp_path: Path
) -> None:
    good = local_connector("org-a", tmp_path)
    hanging = stopped_sshd.connector_config("org-b", "/srv/out", "/srv/acks")
    export = make_export(ledger, "org-a", "D-1")
    overdue_b = make_export(ledger, "org-b", "D-2", sent_at=NOW - 2 * DAY)
    (Path(good.ack_path) / "ack.json").write_text(json.dumps(ack(export.id)))

    def connectors() -> PooledDropzoneConnector:
        # The real SFTP adapter with timeouts longer than the org's budget: the budget is what
        # ends the wait.
        return PooledDropzoneConnector(
            sftp_settings_factory=lambda: SftpSettings(connect_timeout=60)
        )

    slow_first = [hanging, good]
    summaries = processor(
        ledger, org_time_budget_seconds=1.5, pass_deadline_seconds=10
    ).process_all(slow_first, connector_factory=connectors)

    by_org = {s.org_id: s for s in summaries}
    assert by_org["org-b"].timed_out and by_org["org-b"].failure_code == ErrorCode.TIMEOUT
    assert "no result within 1.5 s" in (by_org["org-b"].failure or "")
    assert ledger.get(overdue_b.id) == overdue_b
    assert [o.file_name for o in by_org["org-a"].applied] == ["ack.json"]


def test_orgs_after_the_pass_deadline_are_not_started(
    ledger: SqlExportLedger, tmp_path: Path
) -> None:
    configs = [local_connector(org, tmp_path) for org in ("org-a", "org-b")]
    now = [0.0]

    class SlowOrg(PooledDropzoneConnector):
        def close(self) -> None:
            super().close()
            now[0] = 10.0  # org-a's pass used the whole pass deadline

    bounded = AckProcessor(
        ledger,
        AckSettings(org_time_budget_seconds=5, pass_deadline_seconds=10, settle_seconds=0),
        clock=lambda: NOW,
        monotonic=lambda: now[0],
    )

    summaries = bounded.process_all(configs, connector_factory=SlowOrg)

    assert [(s.org_id, s.not_reached) for s in summaries] == [("org-a", False), ("org-b", True)]


# --- the ack folder itself: resolved before the pass, never into the store or another org -------


def test_a_local_ack_folder_linked_into_the_store_or_another_org_is_not_processed(
    tmp_path: Path, ledger: SqlExportLedger
) -> None:
    store = tmp_path / "store"
    archived = store / "exports" / "globex" / "D-1"
    archived.mkdir(parents=True)
    (archived / "globex_D-1.json").write_text(json.dumps(ack("e-1")))
    globex = replace(local_connector("globex", tmp_path / "dz"), updated_at=NOW)
    (Path(globex.export_path) / "globex_D-2.json").write_text(json.dumps(ack("e-2")))
    into_store = replace(local_connector("evil", tmp_path / "dz"), updated_at=NOW)
    Path(into_store.ack_path).rmdir()
    Path(into_store.ack_path).symlink_to(archived)
    into_globex = replace(local_connector("mallory", tmp_path / "dz"), updated_at=NOW)
    Path(into_globex.ack_path).rmdir()
    Path(into_globex.ack_path).symlink_to(globex.export_path)
    before = (tree(store), tree(tmp_path / "dz"))

    def local_folders(configs: Sequence[ConnectorConfig]) -> LocalFolders:
        return resolve_local_folders(configs, [("the export store", str(store))])

    summaries = AckProcessor(ledger, local_folders=local_folders).process_all(
        [globex, into_store, into_globex], PooledDropzoneConnector()
    )

    by_org = {summary.org_id: summary for summary in summaries}
    assert by_org["globex"].failure is None
    assert by_org["evil"].failure_code == ErrorCode.CONFIG
    assert "the export store" in (by_org["evil"].failure or "")
    assert by_org["mallory"].failure_code == ErrorCode.CONFIG
    assert "org globex's export_path" in (by_org["mallory"].failure or "")
    # nothing moved, no processed/ or error/ created through the links
    assert (tree(store), tree(tmp_path / "dz")) == before
