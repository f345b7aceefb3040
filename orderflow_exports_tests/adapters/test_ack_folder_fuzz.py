"""Fuzzing an org's local ack folder: whatever it holds, the pass stays inside it.

Hypothesis builds folders of files (sizes 0 to over the limit, UTF-8, UTF-16, partial JSON, acks
for this org's, another org's or no export), folders, FIFOs and symlinks to inside and outside,
under names with unicode, upper case and dots. For each: no exception escapes the pass, nothing
outside the org's ack folder changes (a sibling org's folder and an outside folder are compared
before and after), and the other org's rows are untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sql.engine import make_engine
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.demo import local_connector, prepare_database
from orderflow_exports_tests.adapters.test_ack_folder_hostile import SECRET, tree
from orderflow_exports_tests.adapters.test_ack_processing import OneSession, ack, make_export

MAX_BYTES = 512

names = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["A.JSON", "b.Json", ".c.json", "d.json.tmp", "processed", "error", "..json"]),
).filter(lambda n: n not in (".", "..") and len(n.encode("utf-8")) < 200)

contents = st.one_of(
    st.binary(max_size=64),
    st.just(b""),
    st.just(b"x" * (MAX_BYTES + 1)),
    st.just('{"export_id": "ü"}'.encode("utf-16")),
    st.just(b'{"export_id": "'),
    st.sampled_from(["own", "other", "unknown"]),  # a valid ack, resolved per example
)

kinds = st.sampled_from(["file", "dir", "fifo", "link-inside", "link-outside", "link-dangling"])
entries = st.lists(st.tuples(names, kinds, contents), max_size=8, unique_by=lambda e: e[0])


@pytest.fixture(scope="module")
def fuzz_ledger() -> Iterator[SqlExportLedger]:
    folder = Path(tempfile.mkdtemp(prefix="ack-fuzz-db-"))
    engine = make_engine(f"sqlite:///{folder / 'orderflow.db'}")
    prepare_database(engine)
    try:
        yield SqlExportLedger(engine)
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _build(path: Path, kind: str, content: Any, root: Path, exports: dict[str, str]) -> None:
    if kind == "dir":
        path.mkdir()
        (path / "inner.json").write_bytes(b"{}")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-inside":
        path.symlink_to(root / "org-a" / "outbox")
    elif kind == "link-outside":
        path.symlink_to(root / "outside" / "secret.json")
    elif kind == "link-dangling":
        path.symlink_to(root / "nowhere")
    elif isinstance(content, str):
        export_id = exports.get(content, str(uuid.uuid4()))
        path.write_bytes(json.dumps(ack(export_id)).encode())
    else:
        path.write_bytes(content)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(folder=entries)
def test_whatever_the_ack_folder_holds_the_pass_stays_inside_it(
    fuzz_ledger: SqlExportLedger, folder: list[tuple[str, str, Any]]
) -> None:
    root = Path(tempfile.mkdtemp(prefix="ack-fuzz-"))
    try:
        config_a = local_connector("org-a", root)
        config_b = local_connector("org-b", root)
        (root / "outside").mkdir()
        (root / "outside" / "secret.json").write_text(json.dumps({"export_id": SECRET}))
        own = make_export(fuzz_ledger, "org-a", f"D-{uuid.uuid4().hex[:8]}")
        other = make_export(fuzz_ledger, "org-b", f"D-{uuid.uuid4().hex[:8]}")
        (Path(config_b.ack_path) / "waiting.json").write_text(json.dumps(ack(other.id)))
        exports = {"own": own.id, "other": other.id}
        acks = Path(config_a.ack_path)
        for name, kind, content in folder:
            _build(acks / name, kind, content, root, exports)
        untouched = {
            p: tree(p) for p in (root / "org-b", root / "outside", root / "org-a" / "outbox")
        }
        processor = AckProcessor(fuzz_ledger, AckSettings(max_bytes=MAX_BYTES, settle_seconds=0))

        [summary] = processor.process_all([config_a], OneSession(LocalDropzoneSession()))

        for path, before in untouched.items():
            assert tree(path) == before, path
        assert fuzz_ledger.get(other.id) == other
        for note in (acks / "error").glob("*.error.txt") if (acks / "error").is_dir() else ():
            if not note.is_symlink():
                text = note.read_text("utf-8", errors="replace")
                assert SECRET not in text
        assert SECRET not in repr(summary)
    finally:
        shutil.rmtree(root, ignore_errors=True)
