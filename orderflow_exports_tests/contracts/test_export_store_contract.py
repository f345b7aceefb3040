"""The ``ExportStore`` contract: the local store, the S3 store on moto, ``FakeExportStore``.

What the archive relies on: one key rule (``{prefix}/{org}/{draft}/{export_id}.json``), an
org-scoped view that refuses every other org's key, and keys written once (the same bytes again
succeed, other bytes are a conflict).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.adapters.stores.s3 import S3ExportStore
from orderflow_exports.domain.errors import (
    ArchiveConflict,
    ErrorCode,
    ExportError,
    InvalidIdentifier,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.ports import ExportStore
from orderflow_exports_tests.fakes.store import FakeExportStore

PREFIX = "orderflow/exports"
EXPORT_ID = "7d1f0c8e-2b4a-4f7e-9a51-0c3d2e1f4a5b"
OTHER_EXPORT_ID = "0b9e5a61-5f0e-4d2b-8f0a-6c9d7e3b2a10"
REF_A = DraftRef("org-a", "draft-1")
REF_B = DraftRef("org-b", "draft-9")


@pytest.fixture(params=["local", "s3", "fake"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExportStore]:
    if request.param == "local":
        yield LocalExportStore(tmp_path / "archive", PREFIX)
    elif request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        yield S3ExportStore(bucket.client, bucket.bucket, PREFIX)
    else:
        yield FakeExportStore(PREFIX)


def spooled(tmp_path: Path, data: bytes, name: str = "spool.json") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def refused(error: pytest.ExceptionInfo[ExportError]) -> bool:
    return error.value.code == ErrorCode.ARCHIVE and not error.value.transient


def test_keys_follow_the_one_rule(store: ExportStore) -> None:
    key = store.key_for(REF_A, EXPORT_ID)
    assert key == f"{PREFIX}/org-a/draft-1/{EXPORT_ID}.json"
    assert key in store.location(key)
    assert store.for_org("org-a").key_for(REF_A, EXPORT_ID) == key


def test_a_file_is_written_once_and_read_back(store: ExportStore, tmp_path: Path) -> None:
    key = store.key_for(REF_A, EXPORT_ID)
    source, sha = spooled(tmp_path, b'{"lines":[]}\n')
    assert not store.exists(key)
    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert store.exists(key)
    assert store.get_bytes(key) == source.read_bytes()
    # The same bytes again (a retried archive step) succeed and change nothing.
    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert store.get_bytes(key) == source.read_bytes()


def test_other_bytes_under_a_written_key_are_a_conflict(store: ExportStore, tmp_path: Path) -> None:
    key = store.key_for(REF_A, EXPORT_ID)
    first, sha = spooled(tmp_path, b"first\n", "first.json")
    other, other_sha = spooled(tmp_path, b"second\n", "second.json")
    store.put_file(key, first, sha256=sha, export_id=EXPORT_ID)
    with pytest.raises(ArchiveConflict):
        store.put_file(key, other, sha256=other_sha, export_id=EXPORT_ID)
    assert store.get_bytes(key) == b"first\n"


def test_reading_a_missing_key_is_file_not_found(store: ExportStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.get_bytes(store.key_for(REF_A, OTHER_EXPORT_ID))


def test_an_org_view_refuses_every_key_of_another_org(store: ExportStore, tmp_path: Path) -> None:
    source, sha = spooled(tmp_path, b"b's order\n")
    other_key = store.key_for(REF_B, EXPORT_ID)
    store.put_file(other_key, source, sha256=sha, export_id=EXPORT_ID)
    view = store.for_org("org-a")

    with pytest.raises(ExportError) as building:
        view.key_for(REF_B, EXPORT_ID)
    assert refused(building)
    for action in (
        lambda: view.put_file(other_key, source, sha256=sha, export_id=EXPORT_ID),
        lambda: view.get_bytes(other_key),
        lambda: view.exists(other_key),
        lambda: view.location(other_key),
    ):
        with pytest.raises(ExportError) as touching:
            action()
        assert refused(touching)
    # Never re-scoped to another tenant; the same org again is the same view.
    with pytest.raises(ExportError) as rescoping:
        view.for_org("org-b")
    assert refused(rescoping)
    assert view.for_org("org-a").key_for(REF_A, EXPORT_ID) == store.key_for(REF_A, EXPORT_ID)
    assert store.get_bytes(other_key) == b"b's order\n"


def test_an_org_view_shares_the_objects_of_its_store(store: ExportStore, tmp_path: Path) -> None:
    view = store.for_org("org-a")
    key = view.key_for(REF_A, EXPORT_ID)
    source, sha = spooled(tmp_path, b"a's order\n")
    view.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert store.exists(key) and store.get_bytes(key) == b"a's order\n"
    assert view.exists(key)


def test_a_malformed_org_id_is_refused_as_such(store: ExportStore) -> None:
    with pytest.raises(InvalidIdentifier):
        store.for_org("org/../b")


@pytest.mark.parametrize(
    "key",
    [
        f"{PREFIX}/org-a/../org-b/{EXPORT_ID}.json",
        f"{PREFIX}-old/org-a/draft-1/{EXPORT_ID}.json",
        f"{PREFIX}/org-a/draft-1/extra/{EXPORT_ID}.json",
        f"{PREFIX}/org-a/draft-1/{EXPORT_ID}.txt",
    ],
)
def test_keys_outside_the_rule_are_refused(store: ExportStore, key: str) -> None:
    with pytest.raises(ExportError) as raised:
        store.exists(key)
    assert refused(raised)
