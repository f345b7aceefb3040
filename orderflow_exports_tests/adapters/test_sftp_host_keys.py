"""Parsing the ``host_key`` setting into pinned keys (no server needed)."""

from __future__ import annotations

from base64 import b64decode, b64encode
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from orderflow_exports.adapters.sftp.host_keys import (
    PinnedHostKey,
    host_key_algorithms,
    parse_host_keys,
)


def public_line(private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def openssh_fingerprint(line: str) -> str:
    """What ``ssh-keygen -l`` prints for a public key line."""
    blob = b64decode(line.split()[1])
    return "SHA256:" + b64encode(sha256(blob).digest()).decode().rstrip("=")


def test_known_hosts_lines_with_host_names_and_comments() -> None:
    ed = public_line(ed25519.Ed25519PrivateKey.generate())
    ecdsa = public_line(ec.generate_private_key(ec.SECP256R1()))

    pins = parse_host_keys(f"# rotation\nerp.example.com,10.0.0.1 {ed} old key\n\n{ecdsa}\n")

    assert pins == [
        PinnedHostKey("ssh-ed25519", openssh_fingerprint(ed)),
        PinnedHostKey("ecdsa-sha2-nistp256", openssh_fingerprint(ecdsa)),
    ]


def test_fingerprint_lines_keep_their_digest() -> None:
    line = public_line(ed25519.Ed25519PrivateKey.generate())
    fingerprint = openssh_fingerprint(line)

    assert parse_host_keys(f"{fingerprint}= from the portal") == [PinnedHostKey(None, fingerprint)]
    with pytest.raises(ValueError, match="not a SHA256 fingerprint"):
        parse_host_keys("SHA256:abc")


@pytest.mark.parametrize(
    "value",
    [
        "not a key",
        "ssh-ed25519 !!!not-base64",
        # A P-256 key under the P-384 name: paramiko would load it, the pin must not.
        "ecdsa-sha2-nistp384 " + public_line(ec.generate_private_key(ec.SECP256R1())).split()[1],
        # A key named by the wrong type.
        "ssh-rsa " + public_line(ed25519.Ed25519PrivateKey.generate()).split()[1],
    ],
)
def test_lines_that_hold_no_usable_key_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="neither a known_hosts line"):
        parse_host_keys(value)


def test_markers_are_refused_and_nothing_configured_is_no_pins() -> None:
    line = public_line(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="markers"):
        parse_host_keys(f"@cert-authority * {line}")
    assert parse_host_keys(None) == parse_host_keys("  \n# none\n") == []


def test_pinned_key_types_are_offered_first() -> None:
    default = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    pins = [PinnedHostKey("ssh-rsa", "SHA256:x"), PinnedHostKey(None, "SHA256:y")]

    offered = host_key_algorithms(default, pins)

    assert offered[:3] == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    assert sorted(offered) == sorted(default)
