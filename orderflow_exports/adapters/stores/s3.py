"""The export store on S3 or any S3-compatible endpoint.

Objects live at ``{prefix}/{org_id}/{draft_order_id}/{export_id}.json`` and are written once:
every write carries ``If-None-Match: *``, so the server itself refuses to replace a key. When it
refuses (412), the stored SHA-256 decides: the same bytes mean an earlier attempt (or a retry that
botocore made after a lost response) already succeeded; different bytes are an
:class:`ArchiveConflict`.

Large files are uploaded as a multipart upload driven part by part from the file, so memory stays
at about one part: ``upload_fileobj`` would buffer most of the file (~97 MiB extra for a 100 MiB
file) and does not accept ``IfNoneMatch``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from orderflow_exports.adapters.stores.s3_errors import (
    classify_error,
    is_not_found,
    is_precondition_failed,
)
from orderflow_exports.domain.errors import (
    ArchiveConflict,
    ErrorCode,
    ExportError,
    InvalidIdentifier,
)
from orderflow_exports.domain.naming import (
    DraftRef,
    archive_key,
    narrow_org_scope,
    parse_archive_key,
    require_org_in_scope,
    validate_id,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB

DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
# S3's own limits: every part but the last is at least 5 MiB, at most 5 GiB, at most 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

CONTENT_TYPE = "application/json"
META_SHA256 = "sha256"
# A hyphen, not an underscore: proxies such as nginx drop header names with underscores by default.
META_EXPORT_ID = "export-id"

_HASH_CHUNK = 1 * MiB
_BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into ``(bucket, prefix)``; the prefix has no outer slashes.

    Raises ``ValueError`` naming what is wrong: this is read from ``ORDERFLOW_EXPORT_STORE``, and a
    typo must stop the deployment rather than write to an unexpected place.
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(f"export store URL {url!r} must look like 's3://bucket/prefix'")
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"export store URL {url!r} must not have a query or fragment")
    bucket = parts.netloc
    if not bucket:
        raise ValueError(f"export store URL {url!r} names no bucket")
    _check_bucket(bucket)
    return bucket, _check_prefix(parts.path)


class S3ExportStore:
    """``ExportStore`` on an S3 bucket: write-once keys, SHA-256 checked, multipart for big files.

    ``client`` is a boto3 S3 client, built once and shared (building one costs tens of
    milliseconds; the client is thread-safe). ``org_id`` scopes the store to one tenant: every key
    it builds, reads or writes must then be under ``{prefix}/{org_id}/``; :meth:`for_org` makes
    such a view. Files larger than ``multipart_threshold`` bytes go up in ``part_size`` parts.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        org_id: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        _check_bucket(bucket)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"part_size {part_size} must be between {MIN_PART_SIZE} (5 MiB) and "
                f"{MAX_PART_SIZE} (5 GiB), S3's limits"
            )
        if multipart_threshold < 0:
            raise ValueError(f"multipart_threshold {multipart_threshold} must not be negative")
        self._client = client
        self.bucket = bucket
        self.prefix = _check_prefix(prefix)
        self.org_id = None if org_id is None else validate_id(org_id, "org_id")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size

    def __repr__(self) -> str:
        scope = f", org_id={self.org_id!r}" if self.org_id else ""
        return f"S3ExportStore(bucket={self.bucket!r}, prefix={self.prefix!r}{scope})"

    def for_org(self, org_id: str) -> S3ExportStore:
        """The same store restricted to ``org_id``'s keys (org id from the partition)."""
        validate_id(org_id, "org_id")  # a malformed id is refused as such
        try:
            scoped = narrow_org_scope(self.org_id, org_id)
        except InvalidIdentifier as exc:
            raise self._refused(org_id, str(exc)) from exc
        return S3ExportStore(
            self._client,
            self.bucket,
            self.prefix,
            org_id=scoped,
            multipart_threshold=self.multipart_threshold,
            part_size=self.part_size,
        )

    # --- keys -------------------------------------------------------------------------------

    def key_for(self, ref: DraftRef, export_id: str) -> str:
        try:
            require_org_in_scope(self.org_id, ref.org_id)
        except InvalidIdentifier as exc:
            raise self._refused(ref.partition_key, str(exc)) from exc
        return archive_key(self.prefix, ref, export_id)

    def check_key(self, key: str) -> tuple[DraftRef, str]:
        """Return ``(ref, export_id)`` of an archive key, or refuse a key this store must not touch.

        See :func:`parse_archive_key`; for a scoped store the key's org must be the store's org.
        """
        try:
            ref, export_id = parse_archive_key(self.prefix, key)
            require_org_in_scope(self.org_id, ref.org_id)
        except InvalidIdentifier as exc:
            raise self._refused(key, str(exc)) from exc
        return ref, export_id

    def location(self, key: str) -> str:
        self.check_key(key)
        return f"s3://{self.bucket}/{key}"

    # --- writing ----------------------------------------------------------------------------

    def put_file(self, key: str, source: Path, *, sha256: str, export_id: str) -> None:
        """Write ``source`` once at ``key``.

        The file must hash to ``sha256`` (checked while it is read, before anything becomes
        visible). When the key already exists with the same SHA-256 this is a success; with a
        different one it raises :class:`ArchiveConflict`. Other failures raise
        ``ExportError(ARCHIVE)``, transient or permanent.
        """
        _, key_export_id = self.check_key(key)
        if export_id != key_export_id:
            raise self._refused(key, f"does not belong to export {export_id!r}")
        sha256 = _check_sha256(sha256)
        source = Path(source)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise ExportError(
                ErrorCode.IO, f"reading {source} to archive it: {exc}", transient=False
            ) from exc
        metadata = {META_SHA256: sha256, META_EXPORT_ID: export_id}
        if size > self.multipart_threshold and size > 0:
            self._put_multipart(key, source, size, sha256, metadata)
        else:
            self._put_single(key, source, sha256, metadata)

    def _put_single(self, key: str, source: Path, sha256: str, metadata: dict[str, str]) -> None:
        where = self._where(key)
        try:
            with source.open("rb") as handle:
                actual = _hash_stream(handle)
                _check_same(actual, sha256, source)
                handle.seek(0)
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=handle,
                    ContentType=CONTENT_TYPE,
                    Metadata=metadata,
                    ChecksumAlgorithm="SHA256",
                    # Our own digest, not one botocore recomputes from the file: S3 then rejects
                    # the upload (BadDigest) if the bytes that arrive are not the ones we hashed.
                    ChecksumSHA256=_b64_digest(sha256),
                    IfNoneMatch="*",
                )
        except ClientError as exc:
            if is_precondition_failed(exc):
                self._accept_existing(key, sha256)
                return
            raise classify_error(exc, "archiving to", where) from exc
        except BotoCoreError as exc:
            raise classify_error(exc, "archiving to", where) from exc
        except OSError as exc:
            raise ExportError(
                ErrorCode.IO, f"reading {source} to archive it: {exc}", transient=False
            ) from exc
        log.info("archived %s (%s)", where, sha256)

    def _put_multipart(
        self, key: str, source: Path, size: int, sha256: str, metadata: dict[str, str]
    ) -> None:
        where = self._where(key)
        part_size = self._part_size_for(size)
        try:
            created = self._client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=CONTENT_TYPE,
                Metadata=metadata,
                ChecksumAlgorithm="SHA256",
            )
        except (ClientError, BotoCoreError) as exc:
            raise classify_error(exc, "starting multipart upload to", where) from exc
        upload_id = created["UploadId"]
        try:
            parts = self._upload_parts(key, upload_id, source, part_size, sha256)
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException as exc:
            # Parts of an unfinished upload are billed and invisible until aborted, so abort on
            # anything, including an interrupted run, before deciding what the failure means.
            self._abort(key, upload_id)
            if isinstance(exc, ClientError) and is_precondition_failed(exc):
                self._accept_existing(key, sha256)
                return
            if isinstance(exc, ClientError | BotoCoreError):
                raise classify_error(exc, "multipart upload to", where) from exc
            if isinstance(exc, OSError):
                raise ExportError(
                    ErrorCode.IO, f"reading {source} to archive it: {exc}", transient=False
                ) from exc
            raise
        log.info("archived %s (%s, %d parts)", where, sha256, len(parts))

    def _upload_parts(
        self, key: str, upload_id: str, source: Path, part_size: int, sha256: str
    ) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        whole = hashlib.sha256()
        with source.open("rb") as handle:
            number = 1
            while True:
                chunk = handle.read(part_size)
                if not chunk:
                    break
                whole.update(chunk)
                checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                response = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumSHA256=checksum,
                )
                parts.append(
                    {"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}
                )
                number += 1
                # Drop the part before reading the next one, or two parts are alive at once.
                del chunk
        # Checked before completing, so a file that changed under us never becomes visible.
        _check_same(whole.hexdigest(), sha256, source)
        return parts

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:
            # The original failure matters more; a bucket lifecycle rule
            # (AbortIncompleteMultipartUpload) is the backstop for what is left here.
            log.warning(
                "could not abort multipart upload %s of %s",
                upload_id,
                self._where(key),
                exc_info=True,
            )

    def _part_size_for(self, size: int) -> int:
        # Grow the part for huge files rather than fail at part 10,001.
        needed = -(-size // MAX_PARTS)
        part_size = max(self.part_size, needed)
        if part_size > MAX_PART_SIZE:
            raise ExportError(
                ErrorCode.ARCHIVE,
                f"file of {size} bytes is too large for one S3 object",
                transient=False,
            )
        return part_size

    def _accept_existing(self, key: str, sha256: str) -> None:
        """The key already exists: succeed if it holds our bytes, else raise ArchiveConflict."""
        stored = self.stored_sha256(key)
        where = self._where(key)
        if stored is None:
            # 412 said it exists and now it is gone: someone deleted it; a retry will tell.
            raise ExportError(
                ErrorCode.ARCHIVE,
                f"{where} existed (412) but could not be found right after",
                transient=True,
            )
        if stored != sha256:
            raise ArchiveConflict(
                f"{where} already holds different bytes: stored sha256 {stored}, ours {sha256}; "
                "an archive key is written once and is never replaced"
            )
        log.info("%s already holds these bytes (sha256 %s); nothing to write", where, sha256)

    # --- reading ----------------------------------------------------------------------------

    def stored_sha256(self, key: str) -> str | None:
        """SHA-256 of the object at ``key`` (``None`` when missing).

        Taken from the ``sha256`` metadata this store writes; an object without it (written by
        another tool) is read and hashed instead.
        """
        self.check_key(key)
        where = self._where(key)
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise classify_error(exc, "inspecting", where) from exc
        except BotoCoreError as exc:
            raise classify_error(exc, "inspecting", where) from exc
        recorded = str(head.get("Metadata", {}).get(META_SHA256, "")).lower()
        if _SHA256_HEX.fullmatch(recorded):
            return recorded
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            digest = hashlib.sha256()
            for chunk in response["Body"].iter_chunks(_HASH_CHUNK):
                digest.update(chunk)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise classify_error(exc, "reading", where) from exc
        except BotoCoreError as exc:
            raise classify_error(exc, "reading", where) from exc
        return digest.hexdigest()

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when missing, like the local store."""
        self.check_key(key)
        where = self._where(key)
        try:
            # ChecksumMode makes botocore verify the stored SHA-256 of single-part objects.
            response = self._client.get_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            return response["Body"].read()
        except ClientError as exc:
            if is_not_found(exc):
                raise FileNotFoundError(f"no archived object at {where}") from exc
            raise classify_error(exc, "reading", where) from exc
        except BotoCoreError as exc:
            raise classify_error(exc, "reading", where) from exc

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists.

        A HEAD answer has no body, so a missing bucket also reads as ``False`` here; writing
        or reading then reports ``NoSuchBucket`` (permanent).
        """
        self.check_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise classify_error(exc, "inspecting", self._where(key)) from exc
        except BotoCoreError as exc:
            raise classify_error(exc, "inspecting", self._where(key)) from exc
        return True

    # --- helpers ----------------------------------------------------------------------------

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _refused(self, key: object, why: str) -> ExportError:
        scope = f" (scoped to org {self.org_id!r})" if self.org_id else ""
        return ExportError(
            ErrorCode.ARCHIVE,
            f"refusing archive key {key!r} in s3://{self.bucket}/{self.prefix}{scope}: {why}",
            transient=False,
        )


def _check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_PATTERN.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"bucket name {bucket!r} is not valid: 3-63 characters of lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit"
        )
    return bucket


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if not _PREFIX_SEGMENT.fullmatch(segment) or ".." in segment:
            raise ValueError(
                f"prefix {prefix!r} is not valid: segment {segment!r} must be letters, digits, "
                "'.', '_' and '-', start with a letter or digit, and not contain '..' "
                "(empty segments such as '//' are refused too)"
            )
    return stripped


def _check_sha256(sha256: str) -> str:
    value = sha256.lower() if isinstance(sha256, str) else ""
    if not _SHA256_HEX.fullmatch(value):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return value


def _check_same(actual: str, declared: str, source: Path) -> None:
    if actual != declared:
        raise ExportError(
            ErrorCode.ARCHIVE,
            f"{source} hashes to sha256 {actual}, not the declared {declared}: "
            "the file changed after it was written; nothing was archived",
            transient=False,
        )


def _hash_stream(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _b64_digest(sha256_hex: str) -> str:
    # S3 checksums are the base64 of the raw digest, not the hex we keep everywhere else.
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")
