"""How SFTP sessions connect and transfer: the one place their defaults are declared.

This module imports no paramiko, so that the Dagster resources can read the defaults without
loading it on the local-only path.
"""

from __future__ import annotations

from dataclasses import dataclass

from orderflow_exports.adapters.local_dropzone import DEFAULT_MAX_LISTING_ENTRIES
from orderflow_exports.adapters.secrets import SecretScope

#: OpenSSH's ``limits@openssh.com`` max-write-length: its 256 KiB message limit minus room for the
#: request header. A larger write request makes the server drop the whole session.
OPENSSH_MAX_WRITE = 261_120


@dataclass(frozen=True)
class SftpSettings:
    """How SFTP sessions connect and transfer; the same for every org (its config says where).

    All durations are seconds.
    """

    connect_timeout: float = 10.0
    """TCP connect, SSH banner and key exchange must finish within this."""

    auth_timeout: float = 15.0
    """Authentication (public key or password) must finish within this."""

    operation_timeout: float = 30.0
    """An SFTP operation may go this long without any progress (a reply, a write accepted)
    before the connection is given up as dead (TIMEOUT). It bounds silence, not transfer time."""

    keepalive_interval: int = 15
    """Send an SSH keepalive after this many idle seconds so NAT and firewalls keep the
    connection of a long run open; 0 turns it off."""

    preferred_ciphers: tuple[str, ...] = (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes256-ctr",
    )
    """Ciphers offered first, in this order (paramiko's others follow). aes128-gcm is the fastest
    paramiko has; paramiko's own first choice, aes128-ctr, is slower."""

    write_request_size: int = OPENSSH_MAX_WRITE
    """Bytes per SFTP write request (~255 KiB). Lowered further to what the server advertises in
    ``limits@openssh.com``; OpenSSH drops the session on requests over its 256 KiB limit."""

    max_outstanding_writes: int = 32
    """Write requests sent ahead of their replies. The SSH channel window limits what is really in
    flight; this bounds memory and how far a failing upload runs on before it is noticed."""

    fsync: bool = True
    """Ask the server to flush the file to disk (``fsync@openssh.com``, when offered) before it
    gets its final name, so an ERP never reads a file a server crash can still truncate."""

    max_listing_entries: int = DEFAULT_MAX_LISTING_ENTRIES
    """A folder listing (the ack folder) stops after this many entries and the folder is
    reported as too large, an error for its org: a server that lists without end (or a folder
    nobody empties) cannot run this process out of memory. The sweep of stale temp files looks
    at no more than this many entries either."""

    secrets: SecretScope | None = None
    """Where ``file:`` secret references may point (see adapters/secrets.py); None: the
    process's ``ORDERFLOW_SECRET_DIRS`` (or its default), read when a secret is resolved."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "auth_timeout", "operation_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.keepalive_interval < 0:
            raise ValueError("keepalive_interval must be 0 (off) or positive")
        if not 1024 <= self.write_request_size <= OPENSSH_MAX_WRITE:
            raise ValueError(f"write_request_size must be between 1024 and {OPENSSH_MAX_WRITE}")
        if self.max_listing_entries < 1:
            raise ValueError("max_listing_entries must be at least 1")
        if self.max_outstanding_writes < 1:
            raise ValueError("max_outstanding_writes must be at least 1")
        if not self.preferred_ciphers:
            raise ValueError("preferred_ciphers must name at least one cipher")
