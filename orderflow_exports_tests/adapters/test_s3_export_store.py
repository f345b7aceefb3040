"""S3ExportStore against moto's S3 server over real HTTP (CONTRACT §7, issue 4)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, SSLError

from orderflow_exports.adapters.stores.s3 import CONTENT_TYPE, MiB, S3ExportStore, parse_s3_url
from orderflow_exports.adapters.stores.s3_errors import classify_error
from orderflow_exports.domain.errors import (
    ArchiveConflict,
    ErrorCode,
    ExportError,
    InvalidIdentifier,
)
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports_tests.support.moto_s3 import MotoS3Server, S3Bucket

PREFIX = "orderflow/exports"
EXPORT_ID = "7d1f0c8e-2b4a-4f7e-9a51-0c3d2e1f4a5b"
OTHER_EXPORT_ID = "0b9e5a61-5f0e-4d2b-8f0a-6c9d7e3b2a10"
REF_A = DraftRef("org-a", "draft-1")
REF_B = DraftRef("org-b", "draft-9")


def write(path: Path, data: bytes) -> tuple[Path, str]:
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def write_large(path: Path, size: int) -> tuple[Path, str]:
    """A file of ``size`` non-repeating bytes, written and hashed 1 MiB at a time."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        written = 0
        block = 0
        while written < size:
            chunk = hashlib.sha256(str(block).encode()).digest() * (MiB // 32)
            chunk = chunk[: size - written]
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            block += 1
    return path, digest.hexdigest()


def file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def store_on(s3: S3Bucket, **kwargs: Any) -> S3ExportStore:
    return S3ExportStore(s3.client, s3.bucket, PREFIX, **kwargs)


def small_parts(s3: S3Bucket, client: Any = None) -> S3ExportStore:
    return S3ExportStore(
        client or s3.client, s3.bucket, PREFIX, multipart_threshold=5 * MiB, part_size=5 * MiB
    )


def stored(s3: S3Bucket, key: str) -> bytes:
    return s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()


class FailingClient:
    """Delegates to a real client but fails the chosen call on its n-th use."""

    def __init__(self, client: Any, method: str, on_call: int, error: BaseException) -> None:
        self._client = client
        self._method = method
        self._on_call = on_call
        self._error = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != self._method:
            return attr

        def wrapper(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._on_call:
                raise self._error
            return attr(**kwargs)

        return wrapper


# --- parse_s3_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://orderflow-archive/exports", ("orderflow-archive", "exports")),
        ("s3://orderflow-archive/a/b/", ("orderflow-archive", "a/b")),
        ("s3://orderflow-archive", ("orderflow-archive", "")),
        ("s3://orderflow-archive/", ("orderflow-archive", "")),
        ("s3://my.bucket.example/v1.0/exports", ("my.bucket.example", "v1.0/exports")),
    ],
)
def test_parse_s3_url_accepts(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/var/lib/orderflow", "must look like"),
        ("S3://bucket/prefix", "must look like"),
        ("https://bucket/prefix", "must look like"),
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://Upper_Case/prefix", "bucket name"),
        ("s3://ab/prefix", "bucket name"),
        ("s3://user@bucket/prefix", "bucket name"),
        ("s3://bucket:9000/prefix", "bucket name"),
        ("s3://bucket/a/../b", "prefix"),
        ("s3://bucket/a//b", "prefix"),
        ("s3://bucket/a b", "prefix"),
        ("s3://bucket/prefix?x=1", "query"),
        ("s3://bucket/prefix#frag", "query"),
    ],
)
def test_parse_s3_url_refuses_with_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_s3_url(url)


def test_constructor_refuses_part_sizes_s3_would_reject(s3_bucket: S3Bucket) -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3ExportStore(s3_bucket.client, s3_bucket.bucket, PREFIX, part_size=1 * MiB)


# --- keys, bytes, metadata --------------------------------------------------------------------


def test_key_and_location_follow_the_contract(s3_bucket: S3Bucket) -> None:
    store = store_on(s3_bucket)
    key = store.key_for(REF_A, EXPORT_ID)
    assert key == f"orderflow/exports/org-a/draft-1/{EXPORT_ID}.json"
    assert store.location(key) == f"s3://{s3_bucket.bucket}/{key}"


def test_put_file_stores_exact_bytes_metadata_and_checksum(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = store_on(s3_bucket)
    data = '{"schema_version": "orderflow_export_json_v1", "name": "Müller"}\n'.encode()
    source, sha = write(tmp_path / "export.json", data)
    key = store.key_for(REF_A, EXPORT_ID)

    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    assert s3_bucket.keys() == [key]
    assert stored(s3_bucket, key) == data
    assert store.get_bytes(key) == data
    assert store.exists(key)
    head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["Metadata"] == {"sha256": sha, "export-id": EXPORT_ID}
    assert head["ContentType"] == CONTENT_TYPE
    assert head["ChecksumSHA256"] == b64(sha)
    assert store.stored_sha256(key) == sha


def test_exists_is_false_and_get_bytes_raises_for_a_missing_key(s3_bucket: S3Bucket) -> None:
    store = store_on(s3_bucket)
    key = store.key_for(REF_A, EXPORT_ID)
    assert not store.exists(key)
    assert store.stored_sha256(key) is None
    with pytest.raises(FileNotFoundError, match=key):
        store.get_bytes(key)


def test_empty_file_is_archived(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = store_on(s3_bucket, multipart_threshold=0)
    source, sha = write(tmp_path / "empty.json", b"")
    key = store.key_for(REF_A, EXPORT_ID)
    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert store.get_bytes(key) == b""


def test_declared_sha256_must_match_the_file(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = store_on(s3_bucket)
    source, _ = write(tmp_path / "export.json", b'{"a": 1}')
    wrong = hashlib.sha256(b"something else").hexdigest()
    key = store.key_for(REF_A, EXPORT_ID)
    with pytest.raises(ExportError, match="declared") as caught:
        store.put_file(key, source, sha256=wrong, export_id=EXPORT_ID)
    assert caught.value.code == ErrorCode.ARCHIVE
    assert not caught.value.transient
    assert s3_bucket.keys() == []


def test_export_id_must_match_the_key(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = store_on(s3_bucket)
    source, sha = write(tmp_path / "export.json", b'{"a": 1}')
    key = store.key_for(REF_A, EXPORT_ID)
    with pytest.raises(ExportError, match="does not belong to export"):
        store.put_file(key, source, sha256=sha, export_id=OTHER_EXPORT_ID)
    assert s3_bucket.keys() == []


# --- write once (412) -------------------------------------------------------------------------


def test_same_bytes_again_is_success(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = store_on(s3_bucket)
    source, sha = write(tmp_path / "export.json", b'{"a": 1}')
    key = store.key_for(REF_A, EXPORT_ID)
    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    first = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)

    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    again = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
    assert again["ETag"] == first["ETag"]
    assert again["LastModified"] == first["LastModified"]
    assert stored(s3_bucket, key) == b'{"a": 1}'


def test_different_bytes_raise_archive_conflict_and_keep_the_stored_object(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = store_on(s3_bucket)
    key = store.key_for(REF_A, EXPORT_ID)
    original, original_sha = write(tmp_path / "a.json", b'{"a": 1}')
    store.put_file(key, original, sha256=original_sha, export_id=EXPORT_ID)
    changed, changed_sha = write(tmp_path / "b.json", b'{"a": 2}')

    with pytest.raises(ArchiveConflict) as caught:
        store.put_file(key, changed, sha256=changed_sha, export_id=EXPORT_ID)

    message = str(caught.value)
    assert original_sha in message and changed_sha in message and key in message
    assert stored(s3_bucket, key) == b'{"a": 1}'
    head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
    assert head["Metadata"]["sha256"] == original_sha


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "different-bytes"])
def test_412_on_an_object_without_sha256_metadata_hashes_its_bytes(
    s3_bucket: S3Bucket, tmp_path: Path, same: bool
) -> None:
    store = store_on(s3_bucket)
    key = store.key_for(REF_A, EXPORT_ID)
    # Written by some other tool: no metadata, so the store must read and hash the object.
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=b'{"a": 1}')
    source, sha = write(tmp_path / "export.json", b'{"a": 1}' if same else b'{"a": 2}')

    if same:
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    else:
        with pytest.raises(ArchiveConflict, match=hashlib.sha256(b'{"a": 1}').hexdigest()):
            store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert stored(s3_bucket, key) == b'{"a": 1}'


# --- multipart --------------------------------------------------------------------------------


def test_multipart_upload_stores_exact_bytes_and_metadata(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = small_parts(s3_bucket)
    source, sha = write_large(tmp_path / "big.json", 12 * 1000 * 1000)  # 3 parts of 5 MiB
    key = store.key_for(REF_A, EXPORT_ID)

    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    assert hashlib.sha256(stored(s3_bucket, key)).hexdigest() == sha
    head = s3_bucket.client.head_object(
        Bucket=s3_bucket.bucket, Key=key, ChecksumMode="ENABLED", PartNumber=1
    )
    assert head["PartsCount"] == 3
    head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == 12 * 1000 * 1000
    assert head["Metadata"] == {"sha256": sha, "export-id": EXPORT_ID}
    assert head["ContentType"] == CONTENT_TYPE
    # A multipart object's SHA-256 checksum is a checksum of the parts' checksums.
    assert head.get("ChecksumSHA256")
    assert s3_bucket.pending_uploads() == []
    assert store.stored_sha256(key) == sha


def test_multipart_same_bytes_again_is_success_and_leaves_no_upload(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = small_parts(s3_bucket)
    source, sha = write_large(tmp_path / "big.json", 11 * MiB)
    key = store.key_for(REF_A, EXPORT_ID)
    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    assert s3_bucket.pending_uploads() == []
    assert hashlib.sha256(stored(s3_bucket, key)).hexdigest() == sha


def test_multipart_complete_refused_by_412_aborts_and_raises_conflict(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = small_parts(s3_bucket)
    key = store.key_for(REF_A, EXPORT_ID)
    original, original_sha = write(tmp_path / "small.json", b'{"first": true}')
    store.put_file(key, original, sha256=original_sha, export_id=EXPORT_ID)
    source, sha = write_large(tmp_path / "big.json", 11 * MiB)

    with pytest.raises(ArchiveConflict, match=original_sha):
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    assert s3_bucket.pending_uploads() == []
    assert stored(s3_bucket, key) == b'{"first": true}'


def test_multipart_failure_on_a_part_aborts_the_upload(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    dropped = EndpointConnectionError(endpoint_url=s3_bucket.endpoint_url)
    client = FailingClient(s3_bucket.client, "upload_part", on_call=2, error=dropped)
    store = small_parts(s3_bucket, client)
    source, sha = write_large(tmp_path / "big.json", 12 * MiB)
    key = store.key_for(REF_A, EXPORT_ID)

    with pytest.raises(ExportError) as caught:
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    assert caught.value.code == ErrorCode.ARCHIVE
    assert caught.value.transient
    assert client.calls == 2
    assert s3_bucket.pending_uploads() == []
    assert s3_bucket.keys() == []


def test_multipart_interrupted_run_still_aborts(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    client = FailingClient(s3_bucket.client, "upload_part", on_call=2, error=KeyboardInterrupt())
    store = small_parts(s3_bucket, client)
    source, sha = write_large(tmp_path / "big.json", 12 * MiB)
    key = store.key_for(REF_A, EXPORT_ID)

    with pytest.raises(KeyboardInterrupt):
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)

    assert s3_bucket.pending_uploads() == []


def test_multipart_with_a_wrong_declared_sha256_never_completes(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = small_parts(s3_bucket)
    source, _ = write_large(tmp_path / "big.json", 11 * MiB)
    key = store.key_for(REF_A, EXPORT_ID)
    with pytest.raises(ExportError, match="declared"):
        store.put_file(key, source, sha256="0" * 64, export_id=EXPORT_ID)
    assert s3_bucket.pending_uploads() == []
    assert s3_bucket.keys() == []


def test_multipart_upload_memory_stays_near_one_part(
    s3_process_bucket: S3Bucket, tmp_path: Path
) -> None:
    # The server runs in another process here, so tracemalloc sees only the client's memory.
    store = small_parts(s3_process_bucket)
    size = 40 * MiB
    source, sha = write_large(tmp_path / "big.json", size)
    key = store.key_for(REF_A, EXPORT_ID)

    tracemalloc.start()
    try:
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 20 * MiB, f"peak {peak / MiB:.1f} MiB for a {size / MiB:.0f} MiB file"
    head = s3_process_bucket.client.head_object(Bucket=s3_process_bucket.bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["Metadata"]["sha256"] == sha
    assert hashlib.sha256(stored(s3_process_bucket, key)).hexdigest() == sha


# --- tenant isolation -------------------------------------------------------------------------


def test_org_scoped_store_cannot_build_read_or_write_another_orgs_keys(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = store_on(s3_bucket)
    store_a = store.for_org("org-a")
    source, sha = write(tmp_path / "export.json", b'{"org": "b"}')
    key_b = store.key_for(REF_B, EXPORT_ID)
    store.for_org("org-b").put_file(key_b, source, sha256=sha, export_id=EXPORT_ID)

    with pytest.raises(ExportError, match="refuses a key for org 'org-b'"):
        store_a.key_for(REF_B, EXPORT_ID)
    for attempt in (
        lambda: store_a.get_bytes(key_b),
        lambda: store_a.exists(key_b),
        lambda: store_a.location(key_b),
        lambda: store_a.stored_sha256(key_b),
        lambda: store_a.put_file(key_b, source, sha256=sha, export_id=EXPORT_ID),
    ):
        with pytest.raises(ExportError, match="refuses a key for org 'org-b'") as caught:
            attempt()
        assert not caught.value.transient
    with pytest.raises(ExportError, match="cannot be re-scoped"):
        store_a.for_org("org-b")

    assert s3_bucket.keys() == [key_b]
    assert stored(s3_bucket, key_b) == b'{"org": "b"}'


def test_org_scoped_store_works_for_its_own_org(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store_a = store_on(s3_bucket).for_org("org-a")
    source, sha = write(tmp_path / "export.json", b'{"org": "a"}')
    key = store_a.key_for(REF_A, EXPORT_ID)
    store_a.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert store_a.get_bytes(key) == b'{"org": "a"}'
    assert s3_bucket.keys() == [f"{PREFIX}/org-a/draft-1/{EXPORT_ID}.json"]


@pytest.mark.parametrize(
    "key",
    [
        f"other/org-a/draft-1/{EXPORT_ID}.json",
        f"orderflow/exports-old/org-a/draft-1/{EXPORT_ID}.json",
        f"orderflow/exports/org-a/draft-1/../../org-b/draft-9/{EXPORT_ID}.json",
        f"orderflow/exports/org-a/../org-b/draft-9/{EXPORT_ID}.json",
        f"orderflow/exports/org-a/draft-1/{EXPORT_ID}.txt",
        f"orderflow/exports/org-a/draft-1/sub/{EXPORT_ID}.json",
        f"orderflow/exports/org-a/draft-1/{EXPORT_ID}",
        f"orderflow/exports//org-a/draft-1/{EXPORT_ID}.json",
        f"orderflow/exports/org a/draft-1/{EXPORT_ID}.json",
        "orderflow/exports/org-a/draft-1/.json",
        f"/orderflow/exports/org-a/draft-1/{EXPORT_ID}.json",
    ],
)
def test_keys_outside_the_archive_layout_are_refused(
    s3_bucket: S3Bucket, tmp_path: Path, key: str
) -> None:
    store = store_on(s3_bucket)
    source, sha = write(tmp_path / "export.json", b"{}")
    with pytest.raises(ExportError, match="refusing archive key"):
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    with pytest.raises(ExportError, match="refusing archive key"):
        store.get_bytes(key)
    with pytest.raises(ExportError, match="refusing archive key"):
        store.exists(key)
    assert s3_bucket.keys() == []


@pytest.mark.parametrize(
    ("org_id", "draft_id", "export_id"),
    [
        ("org/b", "draft-1", EXPORT_ID),
        ("..", "draft-1", EXPORT_ID),
        ("org-a", "draft:1", EXPORT_ID),
        ("org-a", "draft-1", "../../org-b/x"),
        ("org-a", "draft-1", "a.b"),
    ],
)
def test_bad_ids_never_become_keys(
    s3_bucket: S3Bucket, org_id: str, draft_id: str, export_id: str
) -> None:
    store = store_on(s3_bucket)
    with pytest.raises(InvalidIdentifier):
        store.key_for(DraftRef(org_id, draft_id), export_id)


# --- failures ---------------------------------------------------------------------------------


def test_missing_bucket_is_permanent(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = S3ExportStore(s3_bucket.client, "no-such-bucket-here", PREFIX)
    source, sha = write(tmp_path / "export.json", b"{}")
    key = store.key_for(REF_A, EXPORT_ID)
    with pytest.raises(ExportError, match="NoSuchBucket") as caught:
        store.put_file(key, source, sha256=sha, export_id=EXPORT_ID)
    assert caught.value.code == ErrorCode.ARCHIVE
    assert not caught.value.transient


def test_unreachable_endpoint_is_transient(moto_s3_server: MotoS3Server, tmp_path: Path) -> None:
    # A port bound but never listened on refuses connections; no retries, so it fails fast.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        dead = MotoS3Server(endpoint_url=f"http://127.0.0.1:{port}")
        client = dead.client(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2)
        store = S3ExportStore(client, "orderflow-archive", PREFIX)
        source, sha = write(tmp_path / "export.json", b"{}")
        with pytest.raises(ExportError) as caught:
            store.put_file(store.key_for(REF_A, EXPORT_ID), source, sha256=sha, export_id=EXPORT_ID)
    assert caught.value.code == ErrorCode.ARCHIVE
    assert caught.value.transient


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("AccessDenied", 403), False),
        (_client_error("InvalidAccessKeyId", 403), False),
        (_client_error("SignatureDoesNotMatch", 403), False),
        (_client_error("NoSuchBucket", 404), False),
        (_client_error("InvalidRequest", 400), False),
        (_client_error("InternalError", 500), True),
        (_client_error("ServiceUnavailable", 503), True),
        (_client_error("SlowDown", 503), True),
        (_client_error("RequestTimeout", 400), True),
        (_client_error("ConditionalRequestConflict", 409), True),
        (_client_error("NoSuchUpload", 404), True),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (SSLError(endpoint_url="http://x", error="certificate verify failed"), False),
    ],
    ids=lambda value: value if isinstance(value, bool) else type(value).__name__,
)
def test_classify_error(error: Exception, transient: bool) -> None:
    classified = classify_error(error, "archiving to", "s3://b/k")
    assert classified.code == ErrorCode.ARCHIVE
    assert classified.transient is transient
    assert "s3://b/k" in classified.message


def test_no_real_aws_credentials_leak_into_tests(moto_s3_server: MotoS3Server) -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in os.environ
