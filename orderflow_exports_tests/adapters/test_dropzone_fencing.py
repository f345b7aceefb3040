"""Both dropzones: a refused claim renames nothing, and ``remove_temp`` takes the temp file away.

The SFTP cases run against the real test sshd (``sshd_server``); its folders are on this machine,
so the tests look at them directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sftp.session import open_sftp_session
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.domain.errors import ClaimLost, ExportError
from orderflow_exports.domain.naming import temp_filename
from orderflow_exports.domain.ports import DropzoneSession
from orderflow_exports_tests.support.sshd import SshdServer

SETTINGS = SftpSettings(
    connect_timeout=5.0, auth_timeout=5.0, operation_timeout=5.0, keepalive_interval=0
)
FINAL = "acme_D-1_20261126T100000Z_0b5c8f2e.json"


@pytest.fixture(params=["local", "sftp"])
def zone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[DropzoneSession, Path]]:
    """A dropzone session and its export folder (local, or on the real sshd)."""
    if request.param == "local":
        folder = tmp_path / "outbox"
        folder.mkdir()
        yield LocalDropzoneSession(), folder
        return
    sshd: SshdServer = request.getfixturevalue("sshd_server")
    folder = sshd.root / f"fence-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    session = open_sftp_session(
        sshd.connector_config("acme", str(folder), f"{folder}-acks"), SETTINGS
    )
    try:
        yield session, folder
    finally:
        session.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "spool.json"
    path.write_bytes(os.urandom(300_000))
    return path


def test_a_refused_claim_leaves_no_temp_and_no_final_file(
    zone: tuple[DropzoneSession, Path], source: Path
) -> None:
    session, folder = zone
    seen: list[list[str]] = []

    def refused() -> None:
        seen.append(sorted(os.listdir(folder)))
        raise ClaimLost("export X is now FAILED (INTERRUPTED)")

    with pytest.raises(ClaimLost, match="now FAILED"):
        session.publish(str(folder), FINAL, source, source.stat().st_size, refused)

    assert seen == [[temp_filename(FINAL)]]  # asked with the complete temp file in place
    assert os.listdir(folder) == []


def test_remove_temp_says_whether_it_took_a_temp_file_away(
    zone: tuple[DropzoneSession, Path], source: Path
) -> None:
    session, folder = zone
    assert session.remove_temp(str(folder), FINAL) is False
    (folder / temp_filename(FINAL)).write_bytes(b"{}")
    (folder / FINAL).write_bytes(b"{}")
    assert session.remove_temp(str(folder), FINAL) is True
    assert os.listdir(folder) == [FINAL]  # only the temp name is ever touched
    assert session.remove_temp(str(folder), FINAL) is False


def test_a_temp_file_taken_away_before_the_rename_is_never_published(
    zone: tuple[DropzoneSession, Path], source: Path
) -> None:
    session, folder = zone

    def fenced_off_meanwhile() -> None:
        # What a reconciler of another process does while this one stalls after its claim.
        (folder / temp_filename(FINAL)).unlink()

    with pytest.raises(ExportError):
        session.publish(str(folder), FINAL, source, source.stat().st_size, fenced_off_meanwhile)

    assert os.listdir(folder) == []
