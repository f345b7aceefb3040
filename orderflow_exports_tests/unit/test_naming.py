from datetime import UTC, datetime, timedelta, timezone

import pytest

from orderflow_exports.domain.errors import InvalidIdentifier
from orderflow_exports.domain.naming import (
    DraftRef,
    archive_key,
    export_filename,
    is_our_temp_file,
    narrow_org_scope,
    parse_archive_key,
    require_org_in_scope,
    temp_filename,
    validate_id,
)

EXPORT_ID = "0b5c8a8e-3f7e-4c71-9d2a-5a7d2f3c9e11"


@pytest.mark.parametrize("value", ["a", "acme", "D-1001", "org_1", "A" * 64, "9x", "a-_-b"])
def test_valid_ids_are_accepted(value: str) -> None:
    assert validate_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "../x",
        "a/b",
        "a..b",
        "a.b",
        "a,b",
        "a:b",
        "a b",
        "A" * 65,
        "a\x00b",
        "a\nb",
        "a\tb",
        "tab\t",
        "-leading",
        "_leading",
        "ümlaut",
        "a\\b",
    ],
)
def test_invalid_ids_are_refused_not_sanitised(value: str) -> None:
    with pytest.raises(InvalidIdentifier, match="not allowed"):
        validate_id(value, "org_id")


def test_non_string_id_is_refused() -> None:
    with pytest.raises(InvalidIdentifier, match="must be a string"):
        validate_id(42)


def test_partition_key_round_trip() -> None:
    ref = DraftRef("acme", "D-1001")
    assert ref.partition_key == "acme:D-1001"
    assert DraftRef.from_partition_key("acme:D-1001") == ref


@pytest.mark.parametrize("key", ["acme", "acme:", ":D-1", "acme:D:1", "acme:../x", "a,b:c", ""])
def test_bad_partition_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidIdentifier):
        DraftRef.from_partition_key(key)


def test_export_filename_matches_contract() -> None:
    created = datetime(2026, 11, 26, 10, 5, 9, 123456, tzinfo=UTC)
    name = export_filename(DraftRef("acme", "D-1001"), created, EXPORT_ID)
    assert name == f"acme_D-1001_20261126T100509Z_{EXPORT_ID}.json"


def test_export_filename_converts_to_utc() -> None:
    created = datetime(2026, 11, 26, 11, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert "_20261126T100000Z_" in export_filename(DraftRef("a", "b"), created, EXPORT_ID)


def test_export_filename_refuses_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        export_filename(DraftRef("a", "b"), datetime(2026, 1, 1), EXPORT_ID)


def test_temp_name_is_a_hidden_tmp_file_in_the_same_folder() -> None:
    final = f"acme_D-1_20261126T100509Z_{EXPORT_ID}.json"
    temp = temp_filename(final)
    assert temp == f".{final}.tmp"
    assert is_our_temp_file(temp)
    assert not is_our_temp_file(final)
    assert not is_our_temp_file(".other.tmp")
    with pytest.raises(InvalidIdentifier):
        temp_filename("a/b.json")


def test_archive_key_layout_and_prefix_normalisation() -> None:
    ref = DraftRef("acme", "D-1001")
    assert archive_key("exports", ref, EXPORT_ID) == f"exports/acme/D-1001/{EXPORT_ID}.json"
    assert archive_key("/a/b/", ref, EXPORT_ID) == f"a/b/acme/D-1001/{EXPORT_ID}.json"
    assert archive_key("", ref, EXPORT_ID) == f"acme/D-1001/{EXPORT_ID}.json"
    with pytest.raises(InvalidIdentifier):
        archive_key("exports", ref, "../../etc")


def test_parse_archive_key_accepts_exactly_the_contract_shape() -> None:
    ref, export_id = parse_archive_key("a/b", f"a/b/acme/D-1/{EXPORT_ID}.json")
    assert ref == DraftRef("acme", "D-1") and export_id == EXPORT_ID


@pytest.mark.parametrize(
    "key",
    [
        f"a/b-old/acme/D-1/{EXPORT_ID}.json",
        f"a/b/acme/../D-1/{EXPORT_ID}.json",
        f"a/b/acme/D-1/x/{EXPORT_ID}.json",
        f"a/b/acme/D-1/{EXPORT_ID}.txt",
        "a/b/acme/D-1/.json",
        None,
    ],
)
def test_parse_archive_key_refuses_anything_else(key: object) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_archive_key("a/b", key)


def test_org_scope_only_narrows() -> None:
    assert narrow_org_scope(None, "acme") == "acme"
    assert narrow_org_scope("acme", "acme") == "acme"
    with pytest.raises(InvalidIdentifier, match="cannot be re-scoped"):
        narrow_org_scope("acme", "globex")
    require_org_in_scope(None, "globex")
    with pytest.raises(InvalidIdentifier, match="refuses a key for org 'globex'"):
        require_org_in_scope("acme", "globex")
