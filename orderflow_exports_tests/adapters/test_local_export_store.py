"""The local export store: same layout as S3, written once, org-scoped views."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.domain.errors import (
    ArchiveConflict,
    ErrorCode,
    ExportError,
    InvalidIdentifier,
)
from orderflow_exports.domain.naming import DraftRef

ACME = DraftRef("acme", "D-1")
GLOBEX = DraftRef("globex", "G-1")


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_keys_follow_the_contract_and_are_written_once(tmp_path: Path) -> None:
    store = LocalExportStore(tmp_path / "store", "exports")
    key = store.key_for(ACME, "e-1")
    assert key == "exports/acme/D-1/e-1.json"
    source, sha = _file(tmp_path, "a.json", b'{"a": 1}')
    store.put_file(key, source, sha256=sha, export_id="e-1")
    store.put_file(key, source, sha256=sha, export_id="e-1")  # same bytes again: success
    assert store.get_bytes(key) == b'{"a": 1}'
    other, other_sha = _file(tmp_path, "b.json", b'{"b": 2}')
    with pytest.raises(ArchiveConflict):
        store.put_file(key, other, sha256=other_sha, export_id="e-1")
    assert store.get_bytes(key) == b'{"a": 1}'


def test_org_view_refuses_every_key_of_another_org(tmp_path: Path) -> None:
    store = LocalExportStore(tmp_path / "store", "exports")
    source, sha = _file(tmp_path, "g.json", b"{}")
    globex_key = store.key_for(GLOBEX, "e-9")
    store.put_file(globex_key, source, sha256=sha, export_id="e-9")
    acme = store.for_org("acme")
    assert acme.for_org("acme").key_for(ACME, "e-1") == "exports/acme/D-1/e-1.json"
    attempts: list[Callable[[], object]] = [
        lambda: acme.key_for(GLOBEX, "e-9"),
        lambda: acme.get_bytes(globex_key),
        lambda: acme.exists(globex_key),
        lambda: acme.location(globex_key),
        lambda: acme.put_file(globex_key, source, sha256=sha, export_id="e-9"),
        lambda: acme.get_bytes("exports/acme/../globex/G-1/e-9.json"),
        lambda: acme.get_bytes("exports/acme-old/D-1/e-1.json"),
        lambda: acme.for_org("globex"),
    ]
    for attempt in attempts:
        with pytest.raises(ExportError) as refused:
            attempt()
        assert refused.value.code == ErrorCode.ARCHIVE and not refused.value.transient
    with pytest.raises(InvalidIdentifier):
        store.for_org("../globex")
    # The org's own keys work through the view.
    own, own_sha = _file(tmp_path, "a.json", b"[]")
    key = acme.key_for(ACME, "e-1")
    acme.put_file(key, own, sha256=own_sha, export_id="e-1")
    assert acme.exists(key) and acme.get_bytes(key) == b"[]"
