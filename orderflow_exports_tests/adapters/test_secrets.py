"""Secret references resolved on real files: scope, symlinks, FIFOs, modes, sizes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from orderflow_exports.adapters.secrets import (
    MAX_SECRET_BYTES,
    SECRET_DIRS_ENV,
    SecretScope,
    SecretUnavailable,
    parse_secret_dirs,
    resolve_secret,
)
from orderflow_exports.domain.errors import ErrorCode

# Only a guard against a hang: a resolve that has not returned by then is a hang.
HANG_GUARD_SECONDS = 30.0


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    (folder / "acme").mkdir(parents=True)
    (folder / "globex").mkdir()
    return folder


@pytest.fixture
def scope(secret_dir: Path) -> SecretScope:
    return SecretScope((str(secret_dir),))


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def refused(scope: SecretScope, ref: str, org_id: str = "acme") -> str:
    with pytest.raises(SecretUnavailable) as caught:
        scope.resolve(ref, org_id)
    assert (caught.value.code, caught.value.transient) == (ErrorCode.CONFIG, False)
    return str(caught.value)


def test_a_file_in_the_orgs_folder_is_read(scope: SecretScope, secret_dir: Path) -> None:
    path = secret_file(secret_dir / "acme" / "password", "s3cret\n")
    assert scope.resolve(f"file:{path}", "acme") == "s3cret"
    group_readable = secret_file(secret_dir / "acme" / "key", "k\r\n", mode=0o440)
    assert scope.resolve(f"file:{group_readable}", "acme") == "k"


def test_an_env_variable_under_the_orgs_prefix_is_read(
    scope: SecretScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERFLOW_SECRET_ACME_SFTP_PASSWORD", "from-env")
    assert scope.resolve("env:ORDERFLOW_SECRET_ACME_SFTP_PASSWORD", "acme") == "from-env"


@pytest.mark.parametrize(
    "name", ["AWS_SECRET_ACCESS_KEY", "DAGSTER_PG_PASSWORD", "ORDERFLOW_SECRET_GLOBEX_PASSWORD"]
)
def test_any_other_variable_is_refused_without_its_value(
    scope: SecretScope, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "the-value-of-" + name)
    message = refused(scope, f"env:{name}")
    assert "outside org acme's secret scope" in message
    assert "the-value-of" not in message


def test_another_orgs_file_is_refused(scope: SecretScope, secret_dir: Path) -> None:
    theirs = secret_file(secret_dir / "globex" / "key", "globex-key")
    message = refused(scope, f"file:{theirs}")
    assert "outside org acme's secret folders" in message and "globex-key" not in message


def test_a_file_outside_every_secret_folder_is_refused(scope: SecretScope, tmp_path: Path) -> None:
    outside = secret_file(tmp_path / "elsewhere" / "acme" / "key", "x")
    assert "outside org acme's secret folders" in refused(scope, f"file:{outside}")
    assert "outside" in refused(scope, "file:/etc/passwd")


def test_a_symlink_escaping_the_orgs_folder_is_refused(
    scope: SecretScope, secret_dir: Path, tmp_path: Path
) -> None:
    target = secret_file(tmp_path / "loot", "not-yours")
    (secret_dir / "acme" / "link").symlink_to(target)
    (secret_dir / "acme" / "to_globex").symlink_to(
        secret_file(secret_dir / "globex" / "key", "globex-key")
    )
    assert "resolves (through a symlink) outside" in refused(scope, f"file:{secret_dir}/acme/link")
    assert "outside" in refused(scope, f"file:{secret_dir}/acme/to_globex")


def test_symlinks_inside_the_orgs_folder_are_followed(scope: SecretScope, secret_dir: Path) -> None:
    # The layout of a Kubernetes secret volume: key -> ..data/key, ..data -> ..2026_12_01/
    version = secret_dir / "acme" / "..2026_12_01"
    secret_file(version / "key", "mounted")
    (secret_dir / "acme" / "..data").symlink_to(version.name)
    (secret_dir / "acme" / "key").symlink_to("..data/key")
    assert scope.resolve(f"file:{secret_dir}/acme/key", "acme") == "mounted"


def test_a_fifo_is_refused_at_once(scope: SecretScope, secret_dir: Path) -> None:
    fifo = secret_dir / "acme" / "key"
    os.mkfifo(fifo, 0o600)
    outcome: list[str] = []

    def resolve() -> None:
        outcome.append(refused(scope, f"file:{fifo}"))

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_SECONDS)
    assert outcome, "resolving a FIFO hung"
    assert "not a regular file" in outcome[0]


def test_devices_and_folders_are_refused(scope: SecretScope, secret_dir: Path) -> None:
    (secret_dir / "acme" / "zero").symlink_to("/dev/zero")
    (secret_dir / "acme" / "folder").mkdir()
    assert "outside" in refused(scope, f"file:{secret_dir}/acme/zero")
    assert "not a regular file" in refused(scope, f"file:{secret_dir}/acme/folder/.")
    assert "not a regular file" in refused(SecretScope(("/",)), "file:/dev/zero", "dev")


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666])
def test_a_file_other_users_can_read_or_its_group_write_is_refused(
    scope: SecretScope, secret_dir: Path, mode: int
) -> None:
    key = secret_file(secret_dir / "acme" / "key", "-----BEGIN OPENSSH PRIVATE KEY-----", mode)
    message = refused(scope, f"file:{key}")
    assert f"mode {mode:04o}" in message and "BEGIN" not in message


def test_missing_empty_and_oversized_files(scope: SecretScope, secret_dir: Path) -> None:
    assert "cannot open the file" in refused(scope, f"file:{secret_dir}/acme/absent")
    empty = secret_file(secret_dir / "acme" / "empty", "\n")
    assert "the secret is empty" in refused(scope, f"file:{empty}")
    big = secret_file(secret_dir / "acme" / "big", "x" * (MAX_SECRET_BYTES + 1))
    assert "larger than" in refused(scope, f"file:{big}")
    binary = secret_dir / "acme" / "binary"
    binary.write_bytes(b"\xff\xfe")
    binary.chmod(0o600)
    assert "not UTF-8" in refused(scope, f"file:{binary}")


def test_unset_empty_and_malformed_references(
    scope: SecretScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORDERFLOW_SECRET_ACME_UNSET", raising=False)
    monkeypatch.setenv("ORDERFLOW_SECRET_ACME_EMPTY", "")
    assert "is not set" in refused(scope, "env:ORDERFLOW_SECRET_ACME_UNSET")
    assert "empty" in refused(scope, "env:ORDERFLOW_SECRET_ACME_EMPTY")
    for ref in ("env:", "file:", "file:relative", "vault:x", "hunter2"):
        refused(scope, ref)


def test_without_secret_folders_file_references_are_refused(secret_dir: Path) -> None:
    path = secret_file(secret_dir / "acme" / "key", "k")
    assert "no secret folders are configured" in refused(SecretScope(()), f"file:{path}")


def test_the_process_scope_comes_from_the_setting(
    secret_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = secret_file(secret_dir / "acme" / "key", "k")
    monkeypatch.setenv(SECRET_DIRS_ENV, f"/nonexistent:{secret_dir}")
    assert resolve_secret(f"file:{path}", "acme") == "k"
    monkeypatch.setenv(SECRET_DIRS_ENV, "/nonexistent")
    with pytest.raises(SecretUnavailable):
        resolve_secret(f"file:{path}", "acme")


def test_secret_dirs_setting_must_be_absolute() -> None:
    assert parse_secret_dirs(None, ("/run/secrets",)) == ("/run/secrets",)
    assert parse_secret_dirs("/a:/b", ()) == ("/a", "/b")
    with pytest.raises(ValueError, match="absolute"):
        parse_secret_dirs("/a:relative", ())


def test_check_validates_scope_and_optionally_the_file(
    scope: SecretScope, secret_dir: Path
) -> None:
    absent = f"file:{secret_dir}/acme/absent"
    scope.check(absent, "acme")  # in scope: the file may be mounted later
    with pytest.raises(SecretUnavailable, match="cannot open"):
        scope.check(absent, "acme", must_exist=True)
    with pytest.raises(SecretUnavailable, match="outside"):
        scope.check("env:AWS_SECRET_ACCESS_KEY", "acme")
