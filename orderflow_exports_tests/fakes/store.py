"""``FakeExportStore``: the ``ExportStore`` port in memory, with the real stores' key rule."""

from __future__ import annotations

import hashlib
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


class FakeExportStore:
    """``ExportStore`` over a dict of objects: ``{prefix}/{org_id}/{draft_order_id}/{id}.json``.

    Keys are written once (the same bytes again succeed, other bytes raise ArchiveConflict);
    :meth:`for_org` views share the objects and refuse other orgs' keys, as the local and S3
    stores do. ``fail_puts`` makes every ``put_file`` raise that error (an unreachable store).
    """

    def __init__(
        self,
        prefix: str = "exports",
        *,
        org_id: str | None = None,
        objects: dict[str, bytes] | None = None,
    ) -> None:
        self.prefix = prefix.strip("/")
        self.org_id = None if org_id is None else validate_id(org_id, "org_id")
        self.objects: dict[str, bytes] = {} if objects is None else objects
        self.fail_puts: BaseException | None = None

    def for_org(self, org_id: str) -> FakeExportStore:
        validate_id(org_id, "org_id")  # a malformed id is refused as such
        try:
            scoped = narrow_org_scope(self.org_id, org_id)
        except InvalidIdentifier as exc:
            raise _refused(str(exc)) from exc
        view = FakeExportStore(self.prefix, org_id=scoped, objects=self.objects)
        view.fail_puts = self.fail_puts
        return view

    def key_for(self, ref: DraftRef, export_id: str) -> str:
        try:
            require_org_in_scope(self.org_id, ref.org_id)
        except InvalidIdentifier as exc:
            raise _refused(str(exc)) from exc
        return archive_key(self.prefix, ref, export_id)

    def _check(self, key: str) -> str:
        try:
            ref, _ = parse_archive_key(self.prefix, key)
            require_org_in_scope(self.org_id, ref.org_id)
        except InvalidIdentifier as exc:
            raise _refused(f"refusing archive key {key!r}: {exc}") from exc
        return key

    def location(self, key: str) -> str:
        return f"memory://{self._check(key)}"

    def put_file(self, key: str, source: Path, *, sha256: str, export_id: str) -> None:
        self._check(key)
        if self.fail_puts is not None:
            raise self.fail_puts
        data = Path(source).read_bytes()
        existing = self.objects.get(key)
        if existing is not None:
            stored = hashlib.sha256(existing).hexdigest()
            if stored != sha256:
                raise ArchiveConflict(
                    f"{key} already holds different bytes (sha256 {stored}, ours {sha256})"
                )
            return
        self.objects[key] = data

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when missing, like the real stores."""
        try:
            return self.objects[self._check(key)]
        except KeyError:
            raise FileNotFoundError(f"no archived object at {key}") from None

    def exists(self, key: str) -> bool:
        return self._check(key) in self.objects
