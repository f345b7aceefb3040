"""The local dropzone: atomic publish, never replace, no temp left, sweep, idempotent moves."""

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports_tests.support.components import require_component

NAME = "acme_D-1_20261126T100000Z_3f2b6c1e-9a4d-4e8b-b1c7-0d5e6f7a8b9c.json"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "spool.json"
    path.write_bytes(b'{"x":"' + b"y" * 100_000 + b'"}\n')
    return path


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    path = tmp_path / "outbox"
    path.mkdir()
    return path


def test_publish_writes_exact_bytes_under_the_final_name(source: Path, outbox: Path) -> None:
    session = LocalDropzoneSession()
    path = session.publish(str(outbox), NAME, source, source.stat().st_size)
    assert path == str(outbox / NAME)
    assert (outbox / NAME).read_bytes() == source.read_bytes()
    assert os.listdir(outbox) == [NAME]


def test_existing_final_name_is_never_replaced(source: Path, outbox: Path) -> None:
    (outbox / NAME).write_bytes(b"the ERP's copy")
    with pytest.raises(ExportError) as info:
        LocalDropzoneSession().publish(str(outbox), NAME, source, source.stat().st_size)
    assert info.value.code == ErrorCode.NAME_EXISTS and not info.value.transient
    assert (outbox / NAME).read_bytes() == b"the ERP's copy"
    assert os.listdir(outbox) == [NAME]


def test_size_mismatch_publishes_nothing(source: Path, outbox: Path) -> None:
    with pytest.raises(ExportError) as info:
        LocalDropzoneSession().publish(str(outbox), NAME, source, source.stat().st_size + 1)
    assert info.value.code == ErrorCode.SIZE_MISMATCH
    assert os.listdir(outbox) == []


def test_missing_folder_is_a_permanent_config_error(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        LocalDropzoneSession().publish(str(tmp_path / "nope"), NAME, source, 1)
    assert info.value.code == ErrorCode.CONFIG and not info.value.transient


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    require_component(os.geteuid() == 0, "mounting a tmpfs needs root")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_leaves_no_temp_and_no_final_file(source: Path, tiny_tmpfs: Path) -> None:
    with pytest.raises(ExportError) as info:
        LocalDropzoneSession().publish(str(tiny_tmpfs), NAME, source, source.stat().st_size)
    assert info.value.code == ErrorCode.DISK_FULL
    assert os.listdir(tiny_tmpfs) == []


def test_watcher_never_sees_a_partial_file_under_a_final_name(tmp_path: Path, outbox: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"z" * 8_000_000)
    size = big.stat().st_size
    seen_sizes: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name in os.listdir(outbox):
                if not name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        seen_sizes.append((outbox / name).stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    session = LocalDropzoneSession()
    for n in range(5):
        session.publish(str(outbox), NAME.replace("D-1", f"D-{n}"), big, size)
    stop.set()
    watcher.join()
    assert seen_sizes and set(seen_sizes) == {size}


def test_sweep_removes_only_our_stale_temps(outbox: Path) -> None:
    stale = outbox / f".{NAME}.tmp"
    fresh = outbox / f".{NAME.replace('D-1', 'D-2')}.tmp"
    foreign = outbox / ".partner-upload.tmp"
    final = outbox / NAME
    for path in (stale, fresh, foreign, final):
        path.write_bytes(b"x")
    old = time.time() - 7200
    for path in (stale, foreign, final):
        os.utime(path, (old, old))
    removed = LocalDropzoneSession().sweep_stale_temps(str(outbox), timedelta(hours=1))
    assert removed == [stale.name]
    assert sorted(os.listdir(outbox)) == sorted([fresh.name, foreign.name, final.name])


def test_move_file_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    acks = tmp_path / "acks"
    acks.mkdir()
    (acks / "a.json").write_bytes(b"1")
    session = LocalDropzoneSession()
    target = session.move_file(str(acks), "a.json", "processed")
    assert Path(target).read_bytes() == b"1"
    # An interrupted pass that already moved the file: done, nothing else happens.
    assert session.move_file(str(acks), "a.json", "processed") == target
    (acks / "a.json").write_bytes(b"2")  # the same name arrives again
    second = session.move_file(str(acks), "a.json", "processed")
    assert second != target and Path(second).read_bytes() == b"2"
    assert Path(target).read_bytes() == b"1"
    assert session.list_files(str(acks)) == []


def test_read_file_refuses_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b"x" * 2000)
    session = LocalDropzoneSession()
    assert session.read_file(str(tmp_path), "big.json", 2000) == b"x" * 2000
    with pytest.raises(ExportError, match="larger than 1000 bytes"):
        session.read_file(str(tmp_path), "big.json", 1000)
