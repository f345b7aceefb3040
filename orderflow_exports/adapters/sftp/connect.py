"""Opening an SFTP connection: TCP, SSH negotiation, host key check, login, the sftp channel.

Every phase has its time limit, enforced by the session's watchdog; what goes wrong is reported
as ExportError (CONFIG, HOST_KEY, AUTH, CONNECTION, TIMEOUT).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable

import paramiko

from orderflow_exports.adapters.secrets import resolve_secret
from orderflow_exports.adapters.sftp.connection import SftpConnection
from orderflow_exports.adapters.sftp.credentials import authenticate, load_private_key
from orderflow_exports.adapters.sftp.host_keys import (
    PinnedHostKey,
    check_host_key,
    host_key_algorithms,
)
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sftp.watchdog import Watchdog
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.records import ConnectorConfig

log = logging.getLogger(__name__)

# paramiko's own banner, key-exchange and auth timeouts are set this much above ours, so that our
# watchdog fires first and the failure is reported as TIMEOUT rather than as a protocol error.
_PARAMIKO_TIMEOUT_MARGIN = 5.0


def open_connection(
    config: ConnectorConfig,
    settings: SftpSettings,
    pins: list[PinnedHostKey],
    watchdog: Watchdog,
    where: str,
) -> SftpConnection:
    """A new connection to ``config``'s server, its host key checked against ``pins``."""
    # Credentials first: a broken reference is reported without touching the network.
    # The scope keeps a row from naming another variable or file as its credential.
    org, secrets = config.org_id, settings.secrets
    password = resolve_secret(config.password_ref, org, secrets) if config.password_ref else None
    key = (
        load_private_key(config.private_key_ref, password, org_id=org, secrets=secrets)
        if config.private_key_ref
        else None
    )
    try:
        sock = socket.create_connection(
            (config.host, config.port or 22), timeout=settings.connect_timeout
        )
    except TimeoutError as exc:
        raise ExportError(
            ErrorCode.TIMEOUT,
            f"connecting to {where}: no answer within {settings.connect_timeout:g} s",
            transient=True,
        ) from exc
    except OSError as exc:
        raise ExportError(
            ErrorCode.CONNECTION,
            f"connecting to {where}: {exc.strerror or exc}",
            transient=True,
        ) from exc
    # paramiko never sets it; without it small requests wait for delayed ACKs (~1 MB/s).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    transport = paramiko.Transport(sock)
    phase, limit = "connecting to", settings.connect_timeout
    try:
        transport.banner_timeout = settings.connect_timeout + _PARAMIKO_TIMEOUT_MARGIN
        transport.handshake_timeout = settings.connect_timeout + _PARAMIKO_TIMEOUT_MARGIN
        transport.auth_timeout = settings.auth_timeout + _PARAMIKO_TIMEOUT_MARGIN
        options = transport.get_security_options()
        options.ciphers = cipher_order(settings.preferred_ciphers, options.ciphers)
        options.key_types = host_key_algorithms(options.key_types, pins)

        watchdog.arm(settings.connect_timeout, transport.close)
        negotiated = threading.Event()
        transport.start_client(event=negotiated)
        # Polled: when the watchdog closes a transport stuck before its banner, paramiko
        # does not set the event.
        while not negotiated.wait(0.05) and transport.is_active():
            pass
        if not transport.is_active() or not negotiated.is_set():
            raise transport.get_exception() or paramiko.SSHException("negotiation failed")
        # The host key is checked before any credential is sent.
        check_host_key(transport.get_remote_server_key(), pins, where, config.org_id)

        phase, limit = "authenticating to", settings.auth_timeout
        watchdog.arm(settings.auth_timeout, transport.close)
        authenticate(
            transport,
            config.username or "",
            key,
            password,
            key_ref=config.private_key_ref,
            password_ref=config.password_ref,
            where=where,
        )

        phase, limit = "opening SFTP on", settings.operation_timeout
        watchdog.arm(settings.operation_timeout, transport.close)
        channel = transport.open_session(
            timeout=settings.operation_timeout + _PARAMIKO_TIMEOUT_MARGIN
        )
        channel.settimeout(settings.operation_timeout)
        channel.invoke_subsystem("sftp")
        conn = SftpConnection(transport, channel, settings, watchdog)
        if settings.keepalive_interval:
            transport.set_keepalive(settings.keepalive_interval)
    except ExportError:
        transport.close()
        raise
    except Exception as exc:
        fired = watchdog.fired
        transport.close()
        if fired or isinstance(exc, TimeoutError):
            raise ExportError(
                ErrorCode.TIMEOUT,
                f"{phase} {where}: no progress within {limit:g} s",
                transient=True,
            ) from exc
        if isinstance(exc, paramiko.AuthenticationException):
            raise ExportError(ErrorCode.AUTH, f"{phase} {where}: {exc}", transient=False) from exc
        raise ExportError(
            ErrorCode.CONNECTION,
            f"{phase} {where}: {exc or type(exc).__name__}",
            transient=True,
        ) from exc
    finally:
        watchdog.disarm()
    log.info(
        "connected to %s (%s, host key %s, fsync %s, write size %d)",
        where,
        transport.remote_cipher,
        transport.get_remote_server_key().fingerprint,
        "yes" if conn.has_fsync else "no",
        conn.write_size,
    )
    return conn


def cipher_order(preferred: Iterable[str], available: Iterable[str]) -> list[str]:
    """``preferred`` first, then paramiko's others; ExportError(CONFIG) for an unknown one."""
    available = list(available)
    first = list(preferred)
    unknown = [name for name in first if name not in available]
    if unknown:
        raise ExportError(
            ErrorCode.CONFIG,
            f"unknown SFTP cipher(s) {', '.join(unknown)}; paramiko knows {', '.join(available)}",
            transient=False,
        )
    return first + [name for name in available if name not in first]
