"""A full spool folder (a real 64 KiB tmpfs) while a batch is exported by one ExportService.

The draft that does not fit fails with a transient DISK_FULL ExportError naming the spool folder
(the OSError alone says only "[Errno 28] No space left on device"), leaves no partial spool file
and no erp_export row, and the drafts after it still go out.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.application.archive import archive_outcome
from orderflow_exports.application.export_service import ExportService
from orderflow_exports.application.publishing import ExportSettings
from orderflow_exports.demo import SampleDraft, insert_drafts, local_connector
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import DraftRef
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.components import require_component

log = logging.getLogger(__name__)


@pytest.fixture
def tiny_spool(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "spool"
    mount_point.mkdir()
    require_component(os.geteuid() == 0, "mounting a tmpfs needs root")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _spool_files(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*") if p.is_file())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_full_spool_fails_one_draft_transiently_and_the_batch_goes_on(
    engine: Engine, tmp_path: Path, tiny_spool: Path
) -> None:
    SqlConnectorConfigs(engine).upsert(local_connector("acme", tmp_path / "dropzones"))
    # ~2.5 KB, ~120 KB (more than the whole spool file system), ~2.5 KB
    insert_drafts(
        engine,
        [
            SampleDraft("acme", "S-1"),
            SampleDraft("acme", "BIG", lines=500),
            SampleDraft("acme", "S-2"),
        ],
    )
    store = LocalExportStore(tmp_path / "store")
    ledger = SqlExportLedger(engine)
    service = ExportService(
        drafts=SqlDraftSource(engine),
        configs=SqlConnectorConfigs(engine),
        ledger=ledger,
        dropzones=PooledDropzoneConnector(),
        store=store,
        settings=ExportSettings(spool_dir=tiny_spool),
        log=log,
    )
    first = service.export(DraftRef("acme", "S-1"))
    assert first.action == "sent"  # its spool file stays until it is archived, as in a run

    with pytest.raises(ExportError) as info:
        service.export(DraftRef("acme", "BIG"))

    error = info.value
    assert error.code == ErrorCode.DISK_FULL and error.transient
    assert str(tiny_spool) in error.message and "acme:BIG" in error.message
    assert "No space left on device" in error.message
    assert _spool_files(tiny_spool) == [first.spool_file]  # no partial file of BIG
    assert ledger.latest(DraftRef("acme", "BIG")) is None  # no attempt was recorded

    last = service.export(DraftRef("acme", "S-2"))
    assert last.action == "sent"
    for outcome in (first, last):
        assert outcome.record.status is ExportStatus.SENT
        archive_outcome(store, outcome.ref, outcome, log)
        assert (
            Path(outcome.record.storage_key).read_bytes()
            == Path(outcome.record.dropzone_path).read_bytes()
        )
    assert _spool_files(tiny_spool) == []
