"""Fuzzing ``connectors set``: no traceback, exit 0 or 2, and whatever is saved obeys every rule."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.engine import make_engine, upgrade_schema
from orderflow_exports.cli import main
from orderflow_exports.domain.connector_rules import (
    connector_problems,
    env_secret_prefix,
    path_parts,
)
from orderflow_exports.domain.endpoints import dropzone_server
from orderflow_exports.domain.records import ConnectorConfig

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd0WT1QHGjVXqyLjc2ld2o4hOrpsfRskKL2mdq9yp4m"
VALID_ORGS = ["acme", "globex", "acme-sftp", "acme_sftp", "A"]
BAD_ORGS = ["../x", "", "acme:1", "a b"]
PATHS = ["/dz/a", "/dz/a/acks", "/dz/b", "/dz/b/acks", "/dz/c", "/x/y", "/dz", "/", "/dz//b/."]
PATHS += ["/dz/a/acks/processed", "/dz/c/error"]
BAD_PATHS = ["", " ", "rel/a", "/dz/../etc", "/dz/a\n", "/dz/c\x00", "-x"]
SECRET_DIR = "{secrets}"


def mostly(
    valid: st.SearchStrategy[str], invalid: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """A valid value nine times in ten, so that many configs get as far as the database."""
    # sampled_from picks evenly (integers would favour their bounds) and shrinks to valid.
    return st.sampled_from(range(10)).flatmap(lambda n: invalid if n == 9 else valid)


def maybe(values: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), values)


def refs(org: str) -> st.SearchStrategy[str | None]:
    prefix = f"ORDERFLOW_SECRET_{org.upper().replace('-', '_')}_"
    valid = st.sampled_from([f"env:{prefix}K", f"file:{SECRET_DIR}/{org}/fuzz_key"])
    invalid = st.one_of(
        st.sampled_from(
            [
                "env:ORDERFLOW_SECRET_ACME_SFTP_K",
                "env:ORDERFLOW_SECRET_GLOBEX_K",
                "env:AWS_SECRET_ACCESS_KEY",
                "env:",
                "file:relative",
                f"file:{SECRET_DIR}/globex/fuzz_key",
                f"file:{SECRET_DIR}/{org}/absent",
                "file:/etc/passwd",
                "hunter2",
            ]
        ),
        st.text(max_size=12),
    )
    return maybe(mostly(valid, invalid))


@st.composite
def connector_arguments(draw: st.DrawFn) -> dict[str, object]:
    bad_org = st.one_of(st.sampled_from(BAD_ORGS), st.text(max_size=8))
    org = draw(mostly(st.sampled_from(VALID_ORGS), bad_org))
    transport = draw(mostly(st.sampled_from(["local", "sftp"]), st.just("ftp")))
    bad_path = st.one_of(st.sampled_from(BAD_PATHS), st.text(max_size=10))
    path = mostly(st.sampled_from(PATHS), bad_path)
    arguments: dict[str, object] = {
        "org": org,
        "transport": transport,
        "export-path": draw(path),
        "ack-path": draw(path),
        "ack-deadline-hours": draw(
            maybe(
                mostly(
                    st.sampled_from(["24", "0.5", "8784"]),
                    st.one_of(
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["inf", "nan", "1e6", "-1", "0", "0.0001", "x"]),
                    ),
                )
            )
        ),
        "disabled": draw(st.booleans()),
    }
    remote = transport != "local" or draw(st.integers(0, 9)) == 0  # a local one with sftp options
    if remote:
        ref_org = org if org in VALID_ORGS else "acme"
        arguments |= {
            "host": draw(
                mostly(
                    st.sampled_from(["erp.example.com", "ERP.example.com.", "other.example"]),
                    st.one_of(st.sampled_from(["erp\nx", "a b", "u@h", ""]), st.text(max_size=10)),
                )
            ),
            "port": draw(
                maybe(
                    mostly(
                        st.sampled_from(["22", "2222"]),
                        st.one_of(
                            st.integers(-5, 70_000).map(str),
                            st.sampled_from(["abc", "1e3", "", "0x16", "-5", "99999"]),
                        ),
                    )
                )
            ),
            "username": draw(mostly(st.just("orderflow"), st.text(max_size=8))),
            "host-key": draw(
                mostly(
                    st.just(HOST_KEY),
                    st.one_of(
                        st.sampled_from(["not a key", "SHA256:abc", HOST_KEY + "\nbad", ""]),
                        st.text(max_size=10),
                    ),
                )
            ),
            "private-key-ref": draw(refs(ref_org)),
            "password-ref": draw(refs(ref_org)),
        }
    return arguments


@pytest.fixture
def cli_database(
    tmp_path: Path, test_secret_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> SqlConnectorConfigs:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", url)
    for org in VALID_ORGS:
        key = test_secret_dirs / org / "fuzz_key"
        key.parent.mkdir(exist_ok=True)
        key.write_text("not-really-a-key")
        key.chmod(0o600)
    return SqlConnectorConfigs(engine)


def argv_of(arguments: dict[str, object], secrets: Path) -> list[str]:
    argv = ["connectors", "set"]
    for name, value in arguments.items():
        if name == "disabled":
            argv += ["--disabled"] if value else []
        elif value is not None:
            argv += [f"--{name}", str(value).replace(SECRET_DIR, str(secrets))]
    return argv


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else -1
    return code, err.getvalue()


def assert_every_rule(saved: list[ConnectorConfig]) -> None:
    """The rules restated independently of connector_problems, over everything saved."""
    for config in saved:
        assert connector_problems(config, saved) == [], config
        export, ack = path_parts(config.export_path), path_parts(config.ack_path)
        for path in (config.export_path, config.ack_path):
            assert path.startswith("/") and ".." not in path.split("/")
            assert path.isprintable()
        assert export[: len(ack)] != ack and ack[: len(export)] != export
        if config.transport == "sftp":
            assert config.port is None or 1 <= config.port <= 65535
            assert config.host and config.host.isprintable() and " " not in config.host
        for ref in (config.private_key_ref, config.password_ref):
            if ref and ref.startswith("env:"):
                assert ref[4:].startswith(env_secret_prefix(config.org_id))
        assert 1 <= config.ack_deadline_seconds <= 366 * 24 * 3600
        for other in saved:
            if other.org_id == config.org_id or dropzone_server(other) != dropzone_server(config):
                continue
            for mine in (export, ack):
                for theirs in (path_parts(other.export_path), path_parts(other.ack_path)):
                    assert mine[: len(theirs)] != theirs and theirs[: len(mine)] != mine


@settings(
    max_examples=int(os.environ.get("ORDERFLOW_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(arguments=connector_arguments())
def test_connectors_set_never_crashes_and_saves_only_sound_configs(
    cli_database: SqlConnectorConfigs, test_secret_dirs: Path, arguments: dict[str, object]
) -> None:
    code, err = run(argv_of(arguments, test_secret_dirs))
    event(f"exit {code}")
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert len(err.splitlines()) == 1, err
    assert_every_rule(cli_database.list())
