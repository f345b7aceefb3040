"""The ``DropzoneSession`` port over one SFTP connection, reused for every file of a run.

- Publishing is atomic: ``.{final}.tmp`` is written (pipelined, every reply checked), its size on
  the server compared with the expected size, ``fsync@openssh.com`` sent when offered, and then
  it is renamed with the plain SFTP rename, which never replaces an existing file on OpenSSH.
- One session holds one connection for a whole run. When the connection dies, the next operation
  reconnects; an operation cut by a dropped connection is repeated once on a new one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

from paramiko.sftp import CMD_LSTAT, CMD_OPEN, SFTP_NO_SUCH_FILE
from paramiko.sftp_attr import SFTPAttributes

from orderflow_exports.adapters.local_dropzone import final_name_of_temp
from orderflow_exports.adapters.sftp.connection import SftpConnection
from orderflow_exports.adapters.sftp.folders import (
    ensure_real_dir,
    folder_entry,
    join,
    list_folder,
    makedirs,
    move_into,
    read_regular_file,
    stale_temp_names,
)
from orderflow_exports.adapters.sftp.protocol import (
    EXCLUSIVE_WRITE_FLAGS,
    NO_ATTRS,
    WRITE_FLAGS,
    SftpStatusError,
    attrs_or_none,
    handle_of,
)
from orderflow_exports.adapters.sftp.runner import ConnectionRunner
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.domain.errors import ErrorCode, ExportError, RenameOutcomeUnknown
from orderflow_exports.domain.naming import temp_filename
from orderflow_exports.domain.ports import FolderEntry
from orderflow_exports.domain.records import ConnectorConfig

log = logging.getLogger(__name__)


# Files above this size are not uploaded when their final name is already taken.
_PRECHECK_BYTES = 1024 * 1024


def open_sftp_session(config: ConnectorConfig, settings: SftpSettings) -> SftpDropzoneSession:
    """Connect to ``config``'s SFTP server and return a session for the whole run.

    Raises ExportError (CONFIG, HOST_KEY, AUTH, CONNECTION, TIMEOUT) when it cannot connect.
    """
    session = SftpDropzoneSession(config, settings)
    session.connect()
    return session


@dataclass
class _PublishState:
    """What a publish attempt has done, so that a repeat after a dropped connection is safe."""

    temp_opened: bool = False
    claimed: bool = False
    """The caller's rename right was taken: from then on the caller settles a failure by looking
    at the temp file, so it is left where it is."""
    rename_sent: bool = False


class SftpDropzoneSession(ConnectionRunner):
    """The ``DropzoneSession`` port over one SFTP connection, reused for every file of a run.

    A publish whose rename was already sent when its connection dropped is never uploaded again:
    it checks whether the rename landed and otherwise raises RenameOutcomeUnknown.
    """

    # the DropzoneSession port

    def publish(
        self,
        folder: str,
        final_name: str,
        source: Path,
        expected_size: int,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        final_path = join(folder, final_name)
        temp_path = join(folder, temp_filename(final_name))
        state = _PublishState()
        try:
            reader = source.open("rb")
        except OSError as exc:
            raise ExportError(
                ErrorCode.IO, f"cannot read {source}: {exc.strerror or exc}", transient=False
            ) from exc
        with self._lock, reader:
            try:
                return self._run(
                    f"publishing {final_path}",
                    lambda conn: self._publish_once(
                        conn,
                        folder,
                        final_path,
                        temp_path,
                        reader,
                        expected_size,
                        state,
                        before_rename,
                    ),
                )
            except ExportError:
                # Once the rename right is claimed the temp file is evidence: still there, the
                # rename did not happen (after a refusal, or a lost reply). The caller settles it;
                # removing it here would make a refused rename look like a delivered file.
                if state.temp_opened and not (state.claimed or state.rename_sent):
                    self._discard_temp(temp_path)
                raise

    def _publish_once(
        self,
        conn: SftpConnection,
        folder: str,
        final_path: str,
        temp_path: str,
        reader: IO[bytes],
        expected_size: int,
        state: _PublishState,
        before_rename: Callable[[], None] | None = None,
    ) -> str:
        if state.rename_sent:
            # The connection dropped after the rename was sent. Never upload again: the ERP may
            # have taken the file at once, so a missing final name proves nothing.
            return self._after_lost_rename_reply(conn, final_path, temp_path, expected_size)
        # A big file is not uploaded when its final name is taken (the check shares the open's
        # round trip). For a small one the extra request costs more than it saves: the rename
        # refuses an existing name anyway.
        final_num = conn.send(CMD_LSTAT, final_path) if expected_size > _PRECHECK_BYTES else None
        open_num = conn.send(CMD_OPEN, temp_path, WRITE_FLAGS, NO_ATTRS)
        final_reply = conn.reply(final_num) if final_num is not None else None
        try:
            handle = handle_of(conn.reply(open_num), temp_path)
        except SftpStatusError as exc:
            if exc.sftp_code == SFTP_NO_SUCH_FILE:
                raise ExportError(
                    ErrorCode.CONFIG,
                    f"export folder {folder} does not exist on {self._where}",
                    transient=False,
                ) from exc
            raise
        state.temp_opened = True
        try:
            existing = attrs_or_none(final_reply, final_path) if final_reply else None
        except BaseException:
            conn.close_quietly(handle)
            raise
        if existing is not None:
            conn.close_quietly(handle)
            raise ExportError(
                ErrorCode.NAME_EXISTS,
                f"{final_path} already exists on {self._where}; not replacing it",
                transient=False,
            )
        reader.seek(0)
        try:
            attrs = self._write_temp(conn, handle, temp_path, reader, expected_size)
        except SftpStatusError as exc:
            # A full disk comes back as a plain "Failure": ask the server how much room is left.
            full = self._full_disk_error(conn, folder, temp_path, expected_size, None)
            if full is None:
                raise
            raise full from exc
        if attrs.st_size != expected_size:
            raise self._full_disk_error(
                conn, folder, temp_path, expected_size, attrs.st_size
            ) or ExportError(
                ErrorCode.SIZE_MISMATCH,
                f"{temp_path} has {attrs.st_size} bytes on {self._where}, expected "
                f"{expected_size}; not publishing it",
                transient=True,
            )
        if before_rename is not None:
            before_rename()  # raises when this export is no longer ours: no rename
            state.claimed = True
        state.rename_sent = True
        try:
            renamed = conn.rename_no_replace(temp_path, final_path)
        except SftpStatusError:
            state.rename_sent = False  # the server answered: the rename did not happen
            raise
        state.rename_sent = False
        if not renamed:
            raise ExportError(
                ErrorCode.NAME_EXISTS,
                f"{final_path} appeared on {self._where} during the upload; not replacing it",
                transient=False,
            )
        state.temp_opened = False
        return final_path

    def _write_temp(
        self, conn: SftpConnection, handle: bytes, path: str, reader: IO[bytes], expected_size: int
    ) -> SFTPAttributes:
        """Write ``reader`` to the open ``handle`` (pipelined), flush, close; the file's attrs.

        The handle is closed in every case.
        """
        attrs = conn.write_and_close(
            handle,
            path,
            reader,
            expected_size,
            max_outstanding=self._settings.max_outstanding_writes,
            fsync=self._settings.fsync,
        )
        if attrs is None:
            raise ExportError(
                ErrorCode.IO, f"{path} vanished on {self._where} after upload", transient=True
            )
        return attrs

    def _full_disk_error(
        self,
        conn: SftpConnection,
        folder: str,
        path: str,
        expected_size: int,
        actual_size: int | None,
    ) -> ExportError | None:
        """DISK_FULL when the server's file system has no room for the file, else None."""
        try:
            free = conn.free_bytes(folder)
        except SftpStatusError:
            return None
        if free is None or free >= expected_size - (actual_size or 0):
            return None
        got = "part" if actual_size is None else f"{actual_size}"
        return ExportError(
            ErrorCode.DISK_FULL,
            f"no room for {path} on {self._where}: {got} of {expected_size} bytes written, "
            f"{free} bytes free",
            transient=False,
        )

    def _after_lost_rename_reply(
        self, conn: SftpConnection, final_path: str, temp_path: str, expected_size: int
    ) -> str:
        """The final path when the rename is seen to have landed; else RenameOutcomeUnknown."""
        landed = conn.stat(final_path)
        if landed is not None and landed.st_size == expected_size and conn.stat(temp_path) is None:
            log.info("%s: the rename sent before the connection dropped had landed", final_path)
            return final_path
        raise RenameOutcomeUnknown(
            f"the connection to {self._where} dropped after the rename of {temp_path} to "
            f"{final_path} was sent; its outcome is unknown and the file is not uploaded again"
        )

    def exists(self, folder: str, name: str) -> bool:
        path = join(folder, name)
        with self._lock:
            return self._run(f"checking {path}", lambda conn: conn.stat(path) is not None)

    def remove_temp(self, folder: str, final_name: str) -> bool:
        path = join(folder, temp_filename(final_name))

        def remove(conn: SftpConnection) -> bool:
            try:
                conn.remove(path)
            except SftpStatusError as exc:
                if exc.sftp_code == SFTP_NO_SUCH_FILE:
                    return False
                raise
            return True

        with self._lock:
            removed = self._run(f"removing {path}", remove)
            self._orphans.discard(path)
            return removed

    def sweep_stale_temps(
        self,
        folder: str,
        older_than: timedelta,
        keep: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """Remove our temp files in ``folder`` older than ``older_than`` (by the server's mtime).

        Ages compare the server's modification times with this machine's clock; keep the age far
        above any clock skew (hours, not seconds). ``keep`` is asked, with the final name a stale
        temp file stands for, whether to leave it (the temp file of a row whose rename right is
        taken is the evidence its settling needs).
        """

        def sweep(conn: SftpConnection) -> list[str]:
            cutoff = time.time() - older_than.total_seconds()
            stale = stale_temp_names(
                conn, folder, cutoff, self._settings.max_listing_entries, self._where
            )
            if keep is not None:
                # Asked once the listing is closed: the answer may take a database round trip.
                stale = [name for name in stale if not keep(final_name_of_temp(name))]
            removed = []
            for name in stale:
                try:
                    conn.remove(join(folder, name))
                except SftpStatusError as exc:
                    if exc.sftp_code == SFTP_NO_SUCH_FILE:
                        continue  # removed meanwhile
                    raise
                removed.append(name)
            return sorted(removed)

        with self._lock:
            removed = self._run(f"sweeping {folder}", sweep)
        for name in removed:
            log.info("removed stale temp file %s from %s on %s", name, folder, self._where)
        return removed

    def list_entries(self, folder: str) -> list[FolderEntry]:
        """The entries of ``folder`` with the attributes READDIR gives.

        OpenSSH's READDIR reports lstat attributes, so a symlink is listed as a symlink.
        """

        def listing(conn: SftpConnection) -> list[SFTPAttributes]:
            return list_folder(conn, folder, self._settings.max_listing_entries, self._where)

        with self._lock:
            attrs = self._run(f"listing {folder}", listing)
        return sorted((folder_entry(a) for a in attrs), key=lambda e: e.name)

    def list_files(self, folder: str) -> list[str]:
        return [entry.name for entry in self.list_entries(folder) if entry.kind == "file"]

    def read_file(self, folder: str, name: str, max_bytes: int) -> bytes:
        path = join(folder, name)

        with self._lock:
            data = self._run(
                f"reading {path}", lambda conn: read_regular_file(conn, path, max_bytes)
            )
        if data is None:
            raise ExportError(
                ErrorCode.IO, f"{path} is larger than {max_bytes} bytes", transient=False
            )
        return data

    def move_file(self, folder: str, name: str, subfolder: str) -> str:
        source = join(folder, name)
        with self._lock:
            return self._run(
                f"moving {source} to {subfolder}/",
                lambda conn: move_into(conn, folder, name, subfolder, self._where),
            )

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        final_path = join(folder, name)
        temp_path = join(folder, temp_filename(name))

        def write(conn: SftpConnection) -> str:
            parent = posixpath.dirname(folder.rstrip("/"))
            if parent and parent != folder:
                makedirs(conn, parent)
            ensure_real_dir(conn, folder)
            # EXCL: O_CREAT|O_EXCL on the server never follows a symlink planted at the name.
            try:
                handle = conn.open(temp_path, EXCLUSIVE_WRITE_FLAGS)
            except SftpStatusError:
                if conn.lstat(temp_path) is None:
                    raise
                conn.remove(temp_path)  # removes a symlink itself, never its target
                handle = conn.open(temp_path, EXCLUSIVE_WRITE_FLAGS)
            try:
                attrs = self._write_temp(conn, handle, temp_path, io.BytesIO(data), len(data))
                if attrs.st_size != len(data):
                    raise ExportError(
                        ErrorCode.SIZE_MISMATCH,
                        f"{temp_path} has {attrs.st_size} bytes, expected {len(data)}",
                        transient=True,
                    )
                # Like the local dropzone, this small file replaces an older one of its name.
                if conn.has_posix_rename:
                    conn.posix_rename(temp_path, final_path)
                elif not conn.rename_no_replace(temp_path, final_path):
                    conn.remove(final_path)
                    conn.rename(temp_path, final_path)
            except (SftpStatusError, ExportError):
                with contextlib.suppress(SftpStatusError):
                    conn.remove(temp_path)
                raise
            except BaseException:
                self._orphans.add(temp_path)  # removed after reconnecting
                raise
            return final_path

        with self._lock:
            return self._run(f"writing {final_path}", write)
