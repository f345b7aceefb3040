"""Id rule, partition keys, dropzone file names and archive keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from orderflow_exports.domain.errors import InvalidIdentifier

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PARTITION_SEPARATOR = ":"
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
FILE_SUFFIX = ".json"


def validate_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it satisfies the id rule, else raise :class:`InvalidIdentifier`.

    Ids end up in file names, storage keys and Dagster partition keys, so nothing is sanitised:
    a bad id is refused with the reason.
    """
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{what} must be a string, got {type(value).__name__}")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidIdentifier(
            f"{what} {value!r} is not allowed: it must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$ "
            "(letters, digits, '_' and '-', at most 64 characters, not starting with '_' or '-')"
        )
    return value


@dataclass(frozen=True, order=True)
class DraftRef:
    """Identifies one draft of one org; its string form is the Dagster partition key."""

    org_id: str
    draft_order_id: str

    def __post_init__(self) -> None:
        validate_id(self.org_id, "org_id")
        validate_id(self.draft_order_id, "draft_order_id")

    @property
    def partition_key(self) -> str:
        return f"{self.org_id}{PARTITION_SEPARATOR}{self.draft_order_id}"

    @classmethod
    def from_partition_key(cls, key: str) -> DraftRef:
        org_id, sep, draft_id = key.partition(PARTITION_SEPARATOR)
        if not sep:
            raise InvalidIdentifier(
                f"partition key {key!r} is not of the form '<org_id>:<draft_order_id>'"
            )
        return cls(org_id, draft_id)

    def __str__(self) -> str:
        return self.partition_key


def compact_timestamp(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC, as used in file names."""
    return _as_utc(moment).strftime("%Y%m%dT%H%M%SZ")


def export_filename(ref: DraftRef, created_at: datetime, export_id: str) -> str:
    """The final dropzone file name.

    ``{org_id}_{draft_order_id}_{created_at as YYYYMMDDTHHMMSSZ}_{export_id}.json``
    """
    return (
        f"{ref.org_id}_{ref.draft_order_id}_{compact_timestamp(created_at)}_{export_id}"
        f"{FILE_SUFFIX}"
    )


def temp_filename(final_name: str) -> str:
    """The name a file has while it is written: a dot-file with a ``.tmp`` suffix."""
    if "/" in final_name or not final_name:
        raise InvalidIdentifier(f"not a plain file name: {final_name!r}")
    return f"{TEMP_PREFIX}{final_name}{TEMP_SUFFIX}"


def is_our_temp_file(name: str) -> bool:
    """True for temp names this connector creates (and may sweep when stale)."""
    return (
        name.startswith(TEMP_PREFIX)
        and name.endswith(FILE_SUFFIX + TEMP_SUFFIX)
        and len(name) > len(TEMP_PREFIX + FILE_SUFFIX + TEMP_SUFFIX)
    )


def archive_key(prefix: str, ref: DraftRef, export_id: str) -> str:
    """``{prefix}/{org_id}/{draft_order_id}/{export_id}.json``, written once per export.

    The org id comes from the :class:`DraftRef` (the partition), never from a document.
    """
    validate_id(export_id, "export_id")
    parts = [p for p in prefix.strip("/").split("/") if p]
    parts += [ref.org_id, ref.draft_order_id, f"{export_id}{FILE_SUFFIX}"]
    return "/".join(parts)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC)


def parse_archive_key(prefix: str, key: object) -> tuple[DraftRef, str]:
    """``(ref, export_id)`` of ``{prefix}/{org}/{draft}/{export_id}.json``, else InvalidIdentifier.

    Exactly that shape with valid ids: no ``..``, no extra levels, no neighbouring prefix such
    as ``{prefix}-old/``.
    """
    clean = prefix.strip("/")
    base = f"{clean}/" if clean else ""
    rest = key[len(base) :] if isinstance(key, str) and key.startswith(base) else None
    segments = rest.split("/") if rest is not None else []
    if len(segments) != 3 or not segments[2].endswith(FILE_SUFFIX):
        raise InvalidIdentifier(
            f"archive key {key!r} is not of the form '{base}<org>/<draft>/<export_id>.json'"
        )
    org_id, draft_id, name = segments
    export_id = validate_id(name[: -len(FILE_SUFFIX)], "export_id")
    return DraftRef(org_id, draft_id), export_id


def narrow_org_scope(current: str | None, requested: str) -> str:
    """The org a store view is scoped to after ``for_org(requested)``; never another tenant."""
    validate_id(requested, "org_id")
    if current is not None and current != requested:
        raise InvalidIdentifier(
            f"a store scoped to org {current!r} cannot be re-scoped to org {requested!r}"
        )
    return requested


def require_org_in_scope(scope: str | None, org_id: str) -> None:
    """Refuse a key of ``org_id`` in a store view scoped to another org."""
    if scope is not None and org_id != scope:
        raise InvalidIdentifier(f"a store scoped to org {scope!r} refuses a key for org {org_id!r}")
