"""The ``DropzoneSession`` contract: local folders, SFTP against the test sshd, ``FakeDropzone``.

What the export and ack use cases rely on: publishing is atomic (the final name appears only
once every byte is there, never replacing a file), a failed or refused publish leaves nothing,
the temp file settles a claimed rename (``remove_temp``), the stale-temp sweep removes only our
own old temp files, and the ack pass lists, reads and moves files without following symlinks.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sftp.session import open_sftp_session
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.domain.errors import ClaimLost, ErrorCode, ExportError
from orderflow_exports.domain.naming import temp_filename
from orderflow_exports.domain.ports import DropzoneSession, FolderEntry, NotARegularFile
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.fakes.dropzone import FakeDropzone

NAME = "acme_D-1_20261126T100000Z_7d1f0c8e-2b4a-4f7e-9a51-0c3d2e1f4a5b.json"
OTHER = "acme_D-2_20261126T100000Z_0b9e5a61-5f0e-4d2b-8f0a-6c9d7e3b2a10.json"
SFTP_SETTINGS = SftpSettings(
    connect_timeout=5.0, auth_timeout=5.0, operation_timeout=5.0, keepalive_interval=0
)


class Zone(Protocol):
    """A session on one empty export folder, and a back door to that folder for the test."""

    session: DropzoneSession
    folder: str

    def put(self, name: str, data: bytes, *, age: timedelta | None = None) -> None: ...

    def symlink(self, name: str, target: str) -> None: ...

    def mkdir(self, name: str) -> None: ...

    def names(self, sub: str | None = None) -> list[str]: ...

    def data(self, name: str, sub: str | None = None) -> bytes: ...


@dataclass
class RealZone:
    """A folder on this machine's file system (the sshd serves this machine's folders too)."""

    session: DropzoneSession
    root: Path
    folder: str = field(init=False)

    def __post_init__(self) -> None:
        self.folder = str(self.root)

    def put(self, name: str, data: bytes, *, age: timedelta | None = None) -> None:
        path = self.root / name
        path.write_bytes(data)
        if age is not None:
            then = time.time() - age.total_seconds()
            os.utime(path, (then, then))

    def symlink(self, name: str, target: str) -> None:
        (self.root / name).symlink_to(self.root / target)

    def mkdir(self, name: str) -> None:
        (self.root / name).mkdir()

    def names(self, sub: str | None = None) -> list[str]:
        folder = self.root / sub if sub else self.root
        return sorted(os.listdir(folder)) if folder.is_dir() else []

    def data(self, name: str, sub: str | None = None) -> bytes:
        return ((self.root / sub if sub else self.root) / name).read_bytes()


@dataclass
class FakeZone:
    """A folder of a :class:`FakeDropzone`."""

    session: DropzoneSession
    zone: FakeDropzone
    folder: str

    def put(self, name: str, data: bytes, *, age: timedelta | None = None) -> None:
        mtime = None if age is None else time.time() - age.total_seconds()
        self.zone.put(self.folder, name, data, mtime=mtime)

    def symlink(self, name: str, target: str) -> None:
        self.zone.plant(self.folder, name, "symlink")

    def mkdir(self, name: str) -> None:
        self.zone.make_folder(f"{self.folder}/{name}")

    def names(self, sub: str | None = None) -> list[str]:
        return self.zone.names(f"{self.folder}/{sub}" if sub else self.folder)

    def data(self, name: str, sub: str | None = None) -> bytes:
        return self.zone.data(f"{self.folder}/{sub}" if sub else self.folder, name)


@pytest.fixture(params=["local", "sftp", "fake"])
def dz(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Zone]:
    if request.param == "fake":
        fake = FakeDropzone()
        config = ConnectorConfig(
            org_id="acme", transport="local", export_path="/dz/out", ack_path="/dz/acks"
        )
        fake.make_folder(config.export_path)
        yield FakeZone(fake.session_for(config), fake, config.export_path)
        fake.close()
        return
    if request.param == "local":
        root = tmp_path / "outbox"
        root.mkdir()
        yield RealZone(LocalDropzoneSession(), root)
        return
    sshd = request.getfixturevalue("sshd_server")
    root = sshd.root / f"org-{uuid.uuid4().hex[:12]}" / "orders"
    root.mkdir(parents=True)
    session = open_sftp_session(
        sshd.connector_config("acme", str(root), str(root.parent / "acks")), SFTP_SETTINGS
    )
    try:
        yield RealZone(session, root)
    finally:
        session.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "spool.json"
    path.write_bytes(os.urandom(4096))
    return path


# --- publish ------------------------------------------------------------------------------------


def test_publish_places_the_exact_bytes_under_the_final_name(dz: Zone, source: Path) -> None:
    path = dz.session.publish(dz.folder, NAME, source, source.stat().st_size)
    assert path == f"{dz.folder}/{NAME}"
    assert dz.names() == [NAME]  # no temp file left
    assert dz.data(NAME) == source.read_bytes()
    assert dz.session.exists(dz.folder, NAME)
    assert not dz.session.exists(dz.folder, OTHER)


def test_the_final_name_appears_only_after_every_byte_is_written(dz: Zone, source: Path) -> None:
    seen: list[list[str]] = []

    def before_rename() -> None:
        seen.append(dz.names())
        assert dz.data(temp_filename(NAME)) == source.read_bytes()

    dz.session.publish(dz.folder, NAME, source, source.stat().st_size, before_rename)
    assert seen == [[temp_filename(NAME)]]
    assert dz.names() == [NAME]


def test_a_refused_claim_renames_nothing_and_leaves_no_temp_file(dz: Zone, source: Path) -> None:
    def refuse() -> None:
        raise ClaimLost("another run settled this export")

    with pytest.raises(ClaimLost):
        dz.session.publish(dz.folder, NAME, source, source.stat().st_size, refuse)
    assert dz.names() == []


def test_publish_never_replaces_a_file(dz: Zone, source: Path) -> None:
    dz.put(NAME, b"the ERP's copy")
    with pytest.raises(ExportError) as raised:
        dz.session.publish(dz.folder, NAME, source, source.stat().st_size)
    assert raised.value.code == ErrorCode.NAME_EXISTS and not raised.value.transient
    assert dz.names() == [NAME] and dz.data(NAME) == b"the ERP's copy"


def test_a_size_other_than_expected_is_not_published(dz: Zone, source: Path) -> None:
    with pytest.raises(ExportError) as raised:
        dz.session.publish(dz.folder, NAME, source, source.stat().st_size + 1)
    assert raised.value.code == ErrorCode.SIZE_MISMATCH
    assert dz.names() == []


def test_publishing_into_a_missing_folder_is_a_config_error(dz: Zone, source: Path) -> None:
    with pytest.raises(ExportError) as raised:
        dz.session.publish(f"{dz.folder}/missing", NAME, source, source.stat().st_size)
    assert raised.value.code == ErrorCode.CONFIG and not raised.value.transient


def test_remove_temp_settles_a_claimed_rename(dz: Zone) -> None:
    dz.put(temp_filename(NAME), b"half")
    dz.put(OTHER, b"done")
    assert dz.session.remove_temp(dz.folder, NAME) is True
    assert dz.session.remove_temp(dz.folder, NAME) is False  # gone: never renamed now
    assert dz.session.remove_temp(dz.folder, OTHER) is False  # renamed: no temp file
    assert dz.names() == [OTHER]


# --- stale temp files ---------------------------------------------------------------------------


def test_the_sweep_removes_only_our_stale_temp_files(dz: Zone) -> None:
    hours = timedelta(hours=2)
    dz.put(temp_filename(NAME), b"x", age=hours)  # ours, stale: removed
    dz.put(temp_filename(OTHER), b"x")  # ours, fresh
    dz.put(".partner-upload.tmp", b"x", age=hours)  # not ours
    dz.put(NAME.replace("D-1", "D-3"), b"x", age=hours)  # a final file
    removed = dz.session.sweep_stale_temps(dz.folder, timedelta(hours=1))
    assert removed == [temp_filename(NAME)]
    assert dz.names() == sorted(
        [temp_filename(OTHER), ".partner-upload.tmp", NAME.replace("D-1", "D-3")]
    )


def test_the_sweep_leaves_what_keep_asks_for(dz: Zone) -> None:
    hours = timedelta(hours=2)
    dz.put(temp_filename(NAME), b"x", age=hours)
    dz.put(temp_filename(OTHER), b"x", age=hours)
    asked: list[str] = []

    def keep(final_name: str) -> bool:
        asked.append(final_name)
        return final_name == NAME

    assert dz.session.sweep_stale_temps(dz.folder, timedelta(hours=1), keep) == [
        temp_filename(OTHER)
    ]
    assert sorted(asked) == sorted([NAME, OTHER])
    assert dz.names() == [temp_filename(NAME)]


def test_sweeping_a_missing_folder_finds_nothing(dz: Zone) -> None:
    assert dz.session.sweep_stale_temps(f"{dz.folder}/missing", timedelta(hours=1)) == []


# --- listing, reading, moving (the ack pass) ----------------------------------------------------


def test_list_entries_reports_each_entry_as_itself_sorted(dz: Zone) -> None:
    dz.put("b.json", b"12345")
    dz.put("a.json", b"1")
    dz.mkdir("processed")
    dz.symlink("link.json", "a.json")
    entries = dz.session.list_entries(dz.folder)
    assert [(e.name, e.kind) for e in entries] == [
        ("a.json", "file"),
        ("b.json", "file"),
        ("link.json", "symlink"),
        ("processed", "dir"),
    ]
    sizes = {e.name: e.size for e in entries if e.kind == "file"}
    assert sizes == {"a.json": 1, "b.json": 5}
    assert all(isinstance(e, FolderEntry) and e.mtime is not None for e in entries)
    assert dz.session.list_files(dz.folder) == ["a.json", "b.json"]


def test_listing_a_missing_folder_is_a_config_error(dz: Zone) -> None:
    for listing in (dz.session.list_entries, dz.session.list_files):
        with pytest.raises(ExportError) as raised:
            listing(f"{dz.folder}/missing")
        assert raised.value.code == ErrorCode.CONFIG and not raised.value.transient


def test_read_file_returns_the_bytes_up_to_max_bytes(dz: Zone) -> None:
    dz.put("ack.json", b"x" * 2000)
    assert dz.session.read_file(dz.folder, "ack.json", 2000) == b"x" * 2000
    with pytest.raises(ExportError, match="larger than 1999 bytes") as raised:
        dz.session.read_file(dz.folder, "ack.json", 1999)
    assert raised.value.code == ErrorCode.IO and not raised.value.transient


def test_read_file_never_follows_a_symlink(dz: Zone) -> None:
    dz.put("real.json", b"{}")
    dz.symlink("link.json", "real.json")
    with pytest.raises(NotARegularFile) as link:
        dz.session.read_file(dz.folder, "link.json", 100)
    assert link.value.found == "a symbolic link"


def test_read_file_refuses_a_folder(dz: Zone) -> None:
    dz.mkdir("sub")
    with pytest.raises(NotARegularFile) as folder:
        dz.session.read_file(dz.folder, "sub", 100)
    assert folder.value.found == "a folder"


def test_move_file_into_a_subfolder_is_idempotent_and_never_overwrites(dz: Zone) -> None:
    dz.put("a.json", b"1")
    target = dz.session.move_file(dz.folder, "a.json", "processed")  # created when missing
    assert target == f"{dz.folder}/processed/a.json"
    assert dz.names("processed") == ["a.json"] and dz.data("a.json", "processed") == b"1"
    # A pass interrupted after the move, replayed: done, nothing else happens.
    assert dz.session.move_file(dz.folder, "a.json", "processed") == target
    dz.put("a.json", b"2")  # the same name arrives again
    second = dz.session.move_file(dz.folder, "a.json", "processed")
    assert second == f"{dz.folder}/processed/a.json.1"
    assert dz.data("a.json", "processed") == b"1" and dz.data("a.json.1", "processed") == b"2"
    assert dz.session.list_files(dz.folder) == []


def test_move_file_refuses_a_symlinked_subfolder(dz: Zone) -> None:
    dz.mkdir("elsewhere")
    dz.symlink("processed", "elsewhere")
    dz.put("a.json", b"1")
    with pytest.raises(ExportError) as raised:
        dz.session.move_file(dz.folder, "a.json", "processed")
    assert raised.value.code == ErrorCode.CONFIG
    assert dz.session.list_files(dz.folder) == ["a.json"]


def test_moving_a_file_that_is_nowhere_fails(dz: Zone) -> None:
    with pytest.raises(ExportError):
        dz.session.move_file(dz.folder, "gone.json", "processed")


def test_write_file_creates_its_folder_and_replaces_atomically(dz: Zone) -> None:
    path = dz.session.write_file(f"{dz.folder}/errors", "a.json.error.txt", b"first")
    assert path == f"{dz.folder}/errors/a.json.error.txt"
    dz.session.write_file(f"{dz.folder}/errors", "a.json.error.txt", b"second")
    assert dz.names("errors") == ["a.json.error.txt"]
    assert dz.data("a.json.error.txt", "errors") == b"second"
