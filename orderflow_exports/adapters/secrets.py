"""Resolves secret references (``env:NAME`` or ``file:/path``) to the secret.

The database holds only the reference; the secret lives in the process environment or in a file
mounted next to the code location. A reference is scoped, because whoever can write a config row
decides where the secret is sent (the SFTP server in the same row):

- ``env:`` names only variables under the org's own prefix, ``ORDERFLOW_SECRET_<ORG>_`` (never
  ``AWS_SECRET_ACCESS_KEY`` or ``DAGSTER_PG_PASSWORD``);
- ``file:`` names only files under ``<secret folder>/<org_id>/``, where the secret folders are a
  deployment setting (``ORDERFLOW_SECRET_DIRS``). The path is resolved with its symlinks (as
  Kubernetes secret mounts use them) and the real file must still lie in that org's folder; only
  a regular file is read (never a FIFO or a device, which could block or never end), at most
  :data:`MAX_SECRET_BYTES`, within a time limit, and not when it is readable by every user or
  writable by its group.

Errors name the reference, never the value.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orderflow_exports.domain.connector_rules import secret_ref_problems
from orderflow_exports.domain.errors import ErrorCode, ExportError

# A secret is a password or a private key: anything bigger is a wrong path.
MAX_SECRET_BYTES = 64 * 1024
DEFAULT_READ_TIMEOUT_SECONDS = 5.0
SECRET_DIRS_ENV = "ORDERFLOW_SECRET_DIRS"
_OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_NONBLOCK
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
)
# Readable by every user, or writable by anyone but the owner: someone else can read or plant it.
_UNSAFE_MODE_BITS = stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP


class SecretUnavailable(ExportError):
    """A secret reference cannot be resolved: malformed, out of scope, unset, unreadable.

    It is a configuration error (``CONFIG``), permanent until someone fixes the reference.
    """

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(ErrorCode.CONFIG, f"secret {ref!r}: {reason}", transient=False)
        self.ref = ref


def default_secret_dirs(environ: Mapping[str, str]) -> tuple[str, ...]:
    """``$DAGSTER_HOME/orderflow/secrets`` (``./.orderflow/secrets``) and ``/run/secrets``."""
    home = environ.get("DAGSTER_HOME")
    data = Path(home) / "orderflow" if home else Path(".orderflow").resolve()
    return (str(data / "secrets"), "/run/secrets")


def parse_secret_dirs(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """A colon-separated list of absolute folders; unset or blank means ``default``.

    Raises ValueError for a relative entry (it would depend on the working directory).
    """
    if value is None or not value.strip():
        return default
    dirs = tuple(entry for entry in value.split(":") if entry.strip())
    relative = [entry for entry in dirs if not entry.startswith("/")]
    if relative:
        raise ValueError(f"{SECRET_DIRS_ENV} must hold absolute folders, got {relative[0]!r}")
    return dirs


@dataclass(frozen=True)
class SecretScope:
    """Where secret references may point: the secret folders (see the module docstring).

    An org's ``file:`` references must lie in ``<folder>/<org_id>/`` of one of ``dirs``.
    """

    dirs: tuple[str, ...] = ()
    read_timeout: float = DEFAULT_READ_TIMEOUT_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SecretScope:
        """The scope ``ORDERFLOW_SECRET_DIRS`` (or its default) gives, read now."""
        env = os.environ if environ is None else environ
        return cls(parse_secret_dirs(env.get(SECRET_DIRS_ENV), default_secret_dirs(env)))

    def check(self, ref: str, org_id: str, *, must_exist: bool = False) -> None:
        """Raise SecretUnavailable when ``ref`` is malformed or outside ``org_id``'s scope.

        With ``must_exist`` a ``file:`` reference must also name a readable, safe regular file.
        """
        problems = secret_ref_problems(ref, org_id)
        if problems:
            raise SecretUnavailable(ref, problems[0])
        scheme, _, target = ref.partition(":")
        if scheme == "file":
            real = self._real_path(ref, org_id, target)
            if must_exist:
                self._read_file(ref, real)

    def resolve(self, ref: str, org_id: str) -> str:
        """The secret ``ref`` points to, with one trailing line break removed.

        ``env:NAME`` reads the environment variable; ``file:/path`` reads the file (UTF-8). The
        trailing line break is dropped because files written with ``echo`` end with one, and a
        password compared with it would fail.
        """
        problems = secret_ref_problems(ref, org_id)
        if problems:
            raise SecretUnavailable(ref, problems[0])
        scheme, _, target = ref.partition(":")
        if scheme == "env":
            # Looked up by the name the org's config holds, so it cannot be a fixed Dagster
            # EnvVar field; the name is confined to the org's prefix above.
            value = os.environ.get(target)
            if value is None:
                raise SecretUnavailable(ref, f"environment variable {target} is not set")
        else:
            raw = self._read_file(ref, self._real_path(ref, org_id, target))
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise SecretUnavailable(ref, "the file is not UTF-8 text") from None
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
        if not value:
            raise SecretUnavailable(ref, "the secret is empty")
        return value

    def _org_folders(self, org_id: str) -> list[tuple[Path, Path]]:
        """(as configured, real) ``<folder>/<org_id>`` for every secret folder."""
        folders = []
        for folder in self.dirs:
            named = Path(os.path.normpath(folder)) / org_id
            folders.append((named, Path(os.path.realpath(named))))
        return folders

    def _real_path(self, ref: str, org_id: str, target: str) -> Path:
        if not self.dirs:
            raise SecretUnavailable(
                ref, f"no secret folders are configured ({SECRET_DIRS_ENV}); use an env: reference"
            )
        named = Path(os.path.normpath(target))
        real = Path(os.path.realpath(named))
        for folder, real_folder in self._org_folders(org_id):
            if named.is_relative_to(folder) and named != folder:
                if real.is_relative_to(real_folder) and real != real_folder:
                    return real
                raise SecretUnavailable(
                    ref, f"the file resolves (through a symlink) outside {folder}"
                )
        allowed = ", ".join(str(folder) for folder, _ in self._org_folders(org_id))
        raise SecretUnavailable(
            ref, f"the file is outside org {org_id}'s secret folders (allowed: {allowed}/...)"
        )

    def _read_file(self, ref: str, real: Path) -> bytes:
        """Reads in a worker thread: a file on a hung network mount must not hang the run."""
        outcome: list[bytes | SecretUnavailable] = []

        def read() -> None:
            try:
                outcome.append(_read_regular_file(ref, real))
            except SecretUnavailable as exc:
                outcome.append(exc)

        worker = threading.Thread(target=read, name="orderflow-secret-read", daemon=True)
        worker.start()
        worker.join(self.read_timeout)
        if not outcome:
            raise SecretUnavailable(
                ref, f"reading the file did not finish within {self.read_timeout:g} s"
            )
        result = outcome[0]
        if isinstance(result, SecretUnavailable):
            raise result
        return result


def _read_regular_file(ref: str, real: Path) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO never waits for a writer; O_NOFOLLOW: the resolved path is
        # not swapped for a symlink between the check and the open.
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        raise SecretUnavailable(ref, f"cannot open the file ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretUnavailable(ref, "not a regular file (a FIFO, device or folder)")
        if info.st_mode & _UNSAFE_MODE_BITS:
            raise SecretUnavailable(
                ref,
                f"the file's mode {stat.S_IMODE(info.st_mode):04o} lets other users read it or "
                "its group write it; chmod 600 (or 640/440) it",
            )
        if info.st_size > MAX_SECRET_BYTES:
            raise SecretUnavailable(ref, f"the file is larger than {MAX_SECRET_BYTES} bytes")
        chunks = []
        size = 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SecretUnavailable(ref, f"cannot read the file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_SECRET_BYTES:
        raise SecretUnavailable(ref, f"the file is larger than {MAX_SECRET_BYTES} bytes")
    return raw


def resolve_secret(ref: str, org_id: str, scope: SecretScope | None = None) -> str:
    """The secret behind ``ref`` for org ``org_id``, within ``scope``.

    Without a scope, the process's (``ORDERFLOW_SECRET_DIRS`` or its default, read now).
    """
    return (scope or SecretScope.from_environment()).resolve(ref, org_id)
