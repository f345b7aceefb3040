"""The fault hooks and sessions of ``FakeDropzone``, which the use-case tests build on."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderflow_exports.domain.errors import ErrorCode, ExportError, RenameOutcomeUnknown
from orderflow_exports.domain.naming import temp_filename
from orderflow_exports.domain.records import ConnectorConfig
from orderflow_exports_tests.fakes.dropzone import FakeDropzone

FOLDER = "/in/acme"
NAME = "acme_D-1_20261126T100000Z_x.json"


def sftp(org_id: str, key: str) -> ConnectorConfig:
    return ConnectorConfig(
        org_id=org_id,
        transport="sftp",
        export_path=f"/in/{org_id}",
        ack_path=f"/out/{org_id}",
        host="erp.example.com",
        username="orders",
        host_key="SHA256:x",
        private_key_ref=key,
    )


ACME = sftp("acme", "env:ORDERFLOW_SECRET_ACME_KEY")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "doc.json"
    path.write_bytes(b"{}\n")
    return path


def test_a_fault_fires_the_given_number_of_times(source: Path) -> None:
    zone = FakeDropzone()
    zone.make_folder(FOLDER)
    full = ExportError(ErrorCode.DISK_FULL, "full", transient=False)
    zone.fail("write_temp", full, times=2)
    session = zone.session_for(ACME)
    for _ in range(2):
        with pytest.raises(ExportError) as raised:
            session.publish(FOLDER, NAME, source, 3)
        assert raised.value is full
        assert zone.names(FOLDER) == []
    session.publish(FOLDER, NAME, source, 3)
    assert zone.names(FOLDER) == [NAME]


def test_a_fault_after_the_rename_leaves_the_file_renamed(source: Path) -> None:
    zone = FakeDropzone()
    zone.make_folder(FOLDER)
    zone.fail("rename", RenameOutcomeUnknown("reply lost"), after=True, times=None)
    session = zone.session_for(ACME)
    with pytest.raises(RenameOutcomeUnknown):
        session.publish(FOLDER, NAME, source, 3, before_rename=lambda: None)
    assert zone.names(FOLDER) == [NAME]


def test_a_fault_before_a_claimed_rename_leaves_the_temp_file(source: Path) -> None:
    zone = FakeDropzone()
    zone.make_folder(FOLDER)
    zone.fail("rename", RenameOutcomeUnknown("reply lost"))
    with pytest.raises(RenameOutcomeUnknown):
        zone.session_for(ACME).publish(FOLDER, NAME, source, 3, before_rename=lambda: None)
    assert zone.names(FOLDER) == [temp_filename(NAME)]


def test_sessions_are_shared_per_login_and_a_refused_connect_caches_nothing() -> None:
    zone = FakeDropzone()
    refused = ExportError(ErrorCode.CONNECTION, "refused", transient=True)
    zone.fail("connect", refused)
    with pytest.raises(ExportError):
        zone.session_for(ACME)
    first = zone.session_for(ACME)
    assert zone.session_for(ACME) is first
    assert zone.session_for(sftp("globex", "env:ORDERFLOW_SECRET_GLOBEX_KEY")) is not first
    zone.discard(ACME)
    assert first.closed and zone.session_for(ACME) is not first
    assert zone.connects == [ACME.endpoint, ACME.endpoint, ACME.endpoint]
    assert zone.discarded == [ACME.endpoint]


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown dropzone operation"):
        FakeDropzone().fail("upload", RuntimeError("x"))
