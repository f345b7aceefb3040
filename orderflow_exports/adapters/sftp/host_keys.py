"""The host keys an org accepts, and the check of the key a server presents.

The presented key is checked before any credential is sent, and only against the org's
configured keys: there is no trust on first use.
"""

from __future__ import annotations

from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass

import paramiko

from orderflow_exports.domain.errors import ErrorCode, ExportError


@dataclass(frozen=True)
class PinnedHostKey:
    """One accepted host key: its type (None when only a fingerprint was given) and fingerprint."""

    key_type: str | None
    fingerprint: str

    def describe(self) -> str:
        return f"{self.key_type} {self.fingerprint}" if self.key_type else self.fingerprint


def parse_host_keys(value: str | None) -> list[PinnedHostKey]:
    """The keys of a ``host_key`` setting: known_hosts lines or ``SHA256:`` fingerprints.

    A known_hosts line may start with host names (they are ignored: the org's config already says
    which host this is). Several keys may be given one per line, e.g. during a key rotation.
    Raises ValueError when a line is neither; returns [] when nothing is configured.
    """
    pins: list[PinnedHostKey] = []
    for raw in (value or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("SHA256:"):
            pins.append(PinnedHostKey(None, _fingerprint_line(line)))
            continue
        if line.startswith("@"):
            raise ValueError("known_hosts markers (@cert-authority, @revoked) are not supported")
        pin = _known_hosts_key(line.split())
        if pin is None:
            raise ValueError(
                f"{line[:60]!r} is neither a known_hosts line ('ssh-ed25519 AAAA…') "
                "nor a SHA256: fingerprint"
            )
        pins.append(pin)
    return pins


def _fingerprint_line(line: str) -> str:
    """The ``SHA256:…`` fingerprint a line starts with, as OpenSSH prints it (no padding)."""
    digest = line.split()[0][len("SHA256:") :].rstrip("=")
    try:
        decoded = b64decode(digest + "=" * (-len(digest) % 4), validate=True)
    except ValueError:
        decoded = b""
    if len(decoded) != 32:
        raise ValueError(f"{line[:60]!r} is not a SHA256 fingerprint")
    return f"SHA256:{digest}"


def _known_hosts_key(tokens: list[str]) -> PinnedHostKey | None:
    """The key of a known_hosts line: the first ``type base64`` pair paramiko loads as that type.

    Host names before the pair fail to load and are passed over. The key's own type must equal
    the named one: paramiko loads an ECDSA blob of one curve under another curve's name.
    """
    for kind, encoded in zip(tokens, tokens[1:], strict=False):
        try:
            blob = b64decode(encoded, validate=True)
        except ValueError:
            continue
        try:
            key = paramiko.PKey.from_type_string(kind, blob)
        except Exception:  # noqa: BLE001 - not a key of that type (or no key type): the next pair
            continue
        if key.get_name() == kind:
            return PinnedHostKey(kind, key.fingerprint)
    return None


def host_key_algorithms(default: Iterable[str], pins: list[PinnedHostKey]) -> list[str]:
    """Host key algorithms with the pinned key types first, so the server shows the pinned key.

    The others stay (last), so that a server without the pinned type still presents a key and the
    refusal can name its fingerprint.
    """
    default = list(default)
    first: list[str] = []
    for pin in pins:
        if pin.key_type == "ssh-rsa":
            wanted = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        else:
            wanted = [pin.key_type] if pin.key_type else []
        first += [name for name in wanted if name in default and name not in first]
    return first + [name for name in default if name not in first]


def check_host_key(
    presented: paramiko.PKey, pins: list[PinnedHostKey], where: str, org_id: str
) -> None:
    """Raise ExportError(HOST_KEY) unless ``presented`` is one of ``pins``."""
    shown = f"{presented.get_name()} {presented.fingerprint}"
    if not pins:
        raise ExportError(
            ErrorCode.HOST_KEY,
            f"no host key is configured for {where} (org {org_id}); "
            f"the server presented {shown}. Check it with the server's owner, then set "
            "host_key; refusing to connect without one",
            transient=False,
        )
    if any(pin.fingerprint == presented.fingerprint for pin in pins):
        return
    expected = " or ".join(pin.describe() for pin in pins)
    raise ExportError(
        ErrorCode.HOST_KEY,
        f"host key of {where} does not match: expected {expected}, the server "
        f"presented {shown}. Refusing to connect (the server may have been replaced, or the "
        "connection intercepted); update host_key only after checking the new key",
        transient=False,
    )
