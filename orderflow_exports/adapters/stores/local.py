"""The export store on a local folder, with the same key layout as S3, each key written once."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

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


def _refused(why: str) -> ExportError:
    return ExportError(ErrorCode.ARCHIVE, why, transient=False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LocalExportStore:
    """``ExportStore`` on a folder: ``{root}/{prefix}/{org_id}/{draft_order_id}/{export_id}.json``.

    Same key layout as the S3 store; a key is written once. ``org_id`` scopes the store to one
    tenant (see :meth:`for_org`): every key it touches must then be under ``{prefix}/{org_id}/``.
    """

    def __init__(self, root: Path, prefix: str = "exports", *, org_id: str | None = None) -> None:
        self.root = Path(root)
        self.prefix = prefix.strip("/")
        self.org_id = None if org_id is None else validate_id(org_id, "org_id")

    def for_org(self, org_id: str) -> LocalExportStore:
        """The same store restricted to ``org_id``'s keys (org id from the partition)."""
        validate_id(org_id, "org_id")  # a malformed id is refused as such
        try:
            scoped = narrow_org_scope(self.org_id, org_id)
        except InvalidIdentifier as exc:
            raise _refused(str(exc)) from exc
        return LocalExportStore(self.root, self.prefix, org_id=scoped)

    def key_for(self, ref: DraftRef, export_id: str) -> str:
        try:
            require_org_in_scope(self.org_id, ref.org_id)
        except InvalidIdentifier as exc:
            raise _refused(str(exc)) from exc
        return archive_key(self.prefix, ref, export_id)

    def _path(self, key: str) -> Path:
        try:
            ref, _ = parse_archive_key(self.prefix, key)
            require_org_in_scope(self.org_id, ref.org_id)
        except InvalidIdentifier as exc:
            raise _refused(f"refusing archive key {key!r} under {self.root}: {exc}") from exc
        return self.root / key

    def location(self, key: str) -> str:
        return str(self._path(key))

    def put_file(self, key: str, source: Path, *, sha256: str, export_id: str) -> None:
        target = self._path(key)
        if target.exists():
            stored = file_sha256(target)
            if stored != sha256:
                raise ArchiveConflict(
                    f"{target} already holds different bytes (sha256 {stored}, ours {sha256})"
                )
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{export_id}.tmp")
        try:
            with source.open("rb") as src, temp.open("wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, target)
            except FileExistsError as exc:
                if file_sha256(target) != sha256:
                    raise ArchiveConflict(
                        f"{target} was written concurrently with other bytes"
                    ) from exc
        except OSError as exc:
            raise ExportError(
                ErrorCode.ARCHIVE, f"archiving to {target}: {exc}", transient=True
            ) from exc
        finally:
            temp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()
