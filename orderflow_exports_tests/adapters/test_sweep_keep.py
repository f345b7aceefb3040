"""The stale-temp sweep leaves the temp files its caller asks it to keep (local and real sshd).

A temp file whose row has its rename right taken is the evidence the settle rule reads (still
there: never renamed); the caller names such files through ``keep``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from orderflow_exports.adapters.local_dropzone import LocalDropzoneSession
from orderflow_exports.adapters.sftp.session import open_sftp_session
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.domain.naming import temp_filename
from orderflow_exports.domain.ports import DropzoneSession
from orderflow_exports_tests.support.sshd import SshdServer

CLAIMED = "acme_D-1_20261126T100000Z_0b5c8f2e.json"
ABANDONED = "acme_D-2_20261126T100000Z_1c6d9a3f.json"


@pytest.fixture(params=["local", "sftp"])
def swept(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[DropzoneSession, Path]]:
    if request.param == "local":
        folder = tmp_path / "outbox"
        folder.mkdir()
        yield LocalDropzoneSession(), folder
        return
    sshd: SshdServer = request.getfixturevalue("sshd_server")
    folder = sshd.root / f"sweep-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    settings = SftpSettings(keepalive_interval=0)
    session = open_sftp_session(sshd.connector_config("acme", str(folder), str(folder)), settings)
    try:
        yield session, folder
    finally:
        session.close()


def test_the_sweep_keeps_what_its_caller_names_and_removes_the_rest(
    swept: tuple[DropzoneSession, Path],
) -> None:
    session, folder = swept
    two_hours_ago = time.time() - 7200
    for final in (CLAIMED, ABANDONED):
        temp = folder / temp_filename(final)
        temp.write_bytes(b"{}")
        os.utime(temp, (two_hours_ago, two_hours_ago))
    asked: list[str] = []

    def keep(final_name: str) -> bool:
        asked.append(final_name)
        return final_name == CLAIMED

    removed = session.sweep_stale_temps(  # type: ignore[call-arg]
        str(folder), timedelta(hours=1), keep=keep
    )

    assert removed == [temp_filename(ABANDONED)]
    assert sorted(asked) == sorted([CLAIMED, ABANDONED])
    assert os.listdir(folder) == [temp_filename(CLAIMED)]
