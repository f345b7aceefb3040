"""Resolves secret references (``env:NAME`` or ``file:/path``, CONTRACT §2) to the secret.

The database holds only the reference; the secret lives in the process environment or in a file
mounted next to the code location. Errors name the reference, never the value.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from orderflow_exports.domain.errors import ExportError

# A secret is a password or a private key: anything bigger is a wrong path (e.g. /dev/zero).
MAX_SECRET_BYTES = 1024 * 1024


class SecretUnavailable(ExportError):
    """A secret reference cannot be resolved: malformed, unset variable, unreadable file.

    It is a configuration error (``CONFIG``), permanent until someone fixes the reference.
    """

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(ExportError.CONFIG, f"secret {ref!r}: {reason}", transient=False)
        self.ref = ref


def resolve_secret(ref: str) -> str:
    """The secret ``ref`` points to, with one trailing line break removed.

    ``env:NAME`` reads the environment variable ``NAME``; ``file:/path`` reads the file (UTF-8).
    The trailing line break is dropped because files written with ``echo`` end with one, and a
    password compared with it would fail.
    """
    scheme, sep, target = ref.partition(":")
    if not sep or not target:
        raise SecretUnavailable(ref, "expected 'env:NAME' or 'file:/path'")
    if scheme == "env":
        # Secrets are looked up by the name the org's config holds, so this cannot be a fixed
        # Dagster EnvVar field.
        value = os.environ.get(target)
        if value is None:
            raise SecretUnavailable(ref, f"environment variable {target} is not set")
    elif scheme == "file":
        path = Path(target)
        if not path.is_absolute():
            raise SecretUnavailable(ref, "file references must be absolute paths")
        try:
            # O_NONBLOCK: a FIFO at the path must not block the caller until someone writes it.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise SecretUnavailable(ref, "the path is not a regular file")
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise SecretUnavailable(ref, f"cannot read the file ({exc.strerror or exc})") from None
        if len(raw) > MAX_SECRET_BYTES:
            raise SecretUnavailable(ref, f"the file is larger than {MAX_SECRET_BYTES} bytes")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailable(ref, "the file is not UTF-8 text") from None
    else:
        raise SecretUnavailable(ref, f"unknown scheme {scheme!r}; use 'env:' or 'file:'")
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    if not value:
        raise SecretUnavailable(ref, "the secret is empty")
    return value
