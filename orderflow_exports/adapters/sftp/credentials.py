"""The credentials of an org's SFTP login: its private key and password, and their use.

Both come from the org's secret references (adapters/secrets.py), so a config row can name only
its own org's secrets. Messages name the reference, never the secret.
"""

from __future__ import annotations

import io
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from orderflow_exports.adapters.secrets import SecretScope, resolve_secret
from orderflow_exports.domain.errors import ErrorCode, ExportError


def load_private_key(
    ref: str, passphrase: str | None = None, *, org_id: str, secrets: SecretScope | None = None
) -> paramiko.PKey:
    """The ed25519, RSA or ECDSA private key behind org ``org_id``'s secret reference ``ref``.

    Raises ExportError(CONFIG) when it cannot be read; the message never quotes the key.

    ``paramiko.PKey.from_path`` does the same type detection but only reads a path itself: an
    ``env:`` secret has none, and a ``file:`` secret must be read through the scoped reader (its
    checks on the real path, mode and size). So the key's type is found the way ``from_path``
    finds it, from the resolved text, and that class's public ``from_private_key`` loads it.
    """
    text = resolve_secret(ref, org_id, secrets)
    data = text.encode("utf-8")
    loaded: Any = None
    used: str | None = None
    # The passphrase is tried first, then none: password_ref may be a login password while the
    # key itself is unencrypted (paramiko's own convention).
    for candidate in (passphrase, None) if passphrase else (None,):
        loaded = _parse_private_key(data, candidate.encode("utf-8") if candidate else None)
        if loaded is not None:
            used = candidate
            break
    if loaded is None:
        raise ExportError(
            ErrorCode.CONFIG,
            f"private key {ref} is not a readable OpenSSH or PEM private key "
            "(or its passphrase, taken from password_ref, is wrong)",
            transient=False,
        )
    key_class: type[paramiko.PKey]
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise ExportError(
            ErrorCode.CONFIG,
            f"private key {ref} is a {type(loaded).__name__}; use ed25519, RSA or ECDSA",
            transient=False,
        )
    try:
        return key_class.from_private_key(io.StringIO(text), password=used)
    except Exception:  # noqa: BLE001
        raise ExportError(
            ErrorCode.CONFIG, f"private key {ref} cannot be loaded by paramiko", transient=False
        ) from None


def _parse_private_key(data: bytes, password: bytes | None) -> Any:
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            return loader(data, password=password)
        except Exception:  # noqa: BLE001 - wrong format, wrong or missing passphrase: try the next
            continue
    return None


def authenticate(
    transport: paramiko.Transport,
    username: str,
    key: paramiko.PKey | None,
    password: str | None,
    *,
    key_ref: str | None,
    password_ref: str | None,
    where: str,
) -> None:
    """Log in with the key, then the password; ExportError(AUTH) naming what was refused."""
    refused: list[str] = []
    if key is not None:
        try:
            remaining = transport.auth_publickey(username, key)
        except paramiko.AuthenticationException as exc:
            refused.append(f"key {key_ref} ({exc})")
            remaining = []
        if (
            not transport.is_authenticated()
            and password is not None
            and remaining
            and "password" not in remaining
        ):
            refused.append(f"password not offered (server wants {', '.join(remaining)})")
            password = None
    if not transport.is_authenticated() and password is not None:
        try:
            transport.auth_password(username, password)
        except paramiko.AuthenticationException as exc:
            refused.append(f"password {password_ref} ({exc})")
    if not transport.is_authenticated():
        raise ExportError(
            ErrorCode.AUTH,
            f"authenticating to {where} as {username} failed: "
            + ("; ".join(refused) or "no credentials"),
            transient=False,
        )
