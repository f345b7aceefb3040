"""The real commands as subprocesses: `dagster job execute`, the demo, `orderflow-exports`."""

import contextlib
import io
import os
import re
import socket
from pathlib import Path

import pytest
from sqlalchemy import Engine

from orderflow_exports.cli import main
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import (
    REPO_ROOT,
    VENV_BIN,
    dagster_job_execute,
    orderflow_cli,
    run_command,
)

pytestmark = pytest.mark.slow
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd0WT1QHGjVXqyLjc2ld2o4hOrpsfRskKL2mdq9yp4m"


def test_dagster_job_execute_exports_one_partition(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    [key, other] = env.add_drafts(SampleDraft("acme", "D-1"), SampleDraft("acme", "D-2"))
    done = dagster_job_execute(env, "export_drafts_job", {"dagster/partition": key})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [row] = env.exports(key)
    assert row.status is ExportStatus.SENT
    assert os.listdir(env.outbox("acme")) == [row.filename]
    assert Path(row.storage_key).read_bytes() == Path(row.dropzone_path).read_bytes()
    assert env.exports(other) == []  # only the tagged partition ran


def test_demo_command_runs_the_whole_loop_and_is_idempotent(tmp_path: Path) -> None:
    child = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"), PYTHONWARNINGS="ignore")
    child.pop("ORDERFLOW_DATABASE_URL", None)
    child.pop("ORDERFLOW_EXPORT_STORE", None)
    (tmp_path / "home").mkdir()
    first = run_command([str(VENV_BIN / "orderflow-exports"), "demo"], child)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    outboxes = tmp_path / "home" / "orderflow" / "dropzones"
    # The simulated ERP took every order out of the inboxes.
    assert list(outboxes.glob("*/outbox/*.json")) == []
    files = sorted(p.name for p in outboxes.glob("*/outbox/taken/*.json"))
    assert len(files) == 5  # the DRAFT-status draft is not exported
    assert any(name.startswith("acme_D-1002_") for name in files)
    # Its acks went through the ack pass into processed/.
    assert len(list(outboxes.glob("*/acks/processed/*.json"))) == 5
    rows = re.findall(r"^(\w+)\s+([\w-]+)\s+1\s+(ACKED|FAILED|SENT)\s", first.stdout, re.MULTILINE)
    assert sorted(rows) == [
        ("acme", "D-1001", "ACKED"),
        ("acme", "D-1002", "ACKED"),
        ("acme", "D-1003", "FAILED"),
        ("globex", "G-2001", "ACKED"),
        ("globex", "G-2002", "ACKED"),
    ]
    assert "ERP_REJECTED: ERP rejected the order" in first.stdout
    retry = "orderflow-exports exports retry --org acme --draft D-1003"
    assert retry in first.stdout
    archived = sorted(p.name for p in (tmp_path / "home/orderflow/store").rglob("*.json"))
    assert len(archived) == 5

    second = run_command([str(VENV_BIN / "orderflow-exports"), "demo"], child)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in outboxes.glob("*/outbox/taken/*.json")) == files
    assert "not sending it again" in second.stdout + second.stderr
    assert "took 0, accepted 0, rejected 0" in second.stdout
    again = re.findall(
        r"^(\w+)\s+([\w-]+)\s+1\s+(ACKED|FAILED|SENT)\s", second.stdout, re.MULTILINE
    )
    assert sorted(again) == sorted(rows)  # nothing sent twice, no new attempt


def test_exports_list_shows_failures_with_the_retry_command(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme", export_path=str(env.dropzones / "missing"))
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert not env.run_export([key]).success
    listed = orderflow_cli(env, "exports", "list", "--status", "FAILED")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^acme\s+D-1\s+1\s+FAILED\s", listed.stdout, re.MULTILINE)
    assert "CONFIG: export folder" in listed.stdout
    assert "orderflow-exports exports retry --org acme --draft D-1" in listed.stdout
    assert "/assets/export_json?view=partitions&partition=acme:D-1" in listed.stdout
    assert "no exports" in orderflow_cli(env, "exports", "list", "--status", "ACKED").stdout

    # Once a later attempt went out, the failure listed alone needs nobody: no hint.
    (env.dropzones / "missing").mkdir(parents=True)
    assert env.run_export([key]).success
    after = orderflow_cli(env, "exports", "list", "--status", "FAILED")
    assert re.search(r"^acme\s+D-1\s+1\s+FAILED\s", after.stdout, re.MULTILINE)
    assert "acme:D-1 attempt 1 FAILED" not in after.stdout and "retry:" not in after.stdout


def test_connectors_cli_round_trip_and_clear_errors(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    saved = orderflow_cli(
        env,
        "connectors",
        "set",
        "--org",
        "globex",
        "--transport",
        "sftp",
        "--host",
        "h",
        "--username",
        "u",
        "--host-key",
        HOST_KEY,
        "--private-key-ref",
        "env:ORDERFLOW_SECRET_GLOBEX_KEY",
        "--export-path",
        "/in",
        "--ack-path",
        "/out",
    )
    assert saved.returncode == 0, saved.stderr
    listed = orderflow_cli(env, "connectors", "list")
    assert "sftp://u@h:22" in listed.stdout and "env:ORDERFLOW_SECRET_GLOBEX_KEY" in listed.stdout
    refused = orderflow_cli(
        env,
        "connectors",
        "set",
        "--org",
        "../x",
        "--transport",
        "local",
        "--export-path",
        "/a",
        "--ack-path",
        "/b",
    )
    assert refused.returncode == 2 and "not allowed" in refused.stderr
    bad_secret = orderflow_cli(
        env,
        "connectors",
        "set",
        "--org",
        "x",
        "--transport",
        "sftp",
        "--host",
        "h",
        "--username",
        "u",
        "--host-key",
        HOST_KEY,
        "--password-ref",
        "hunter2",
        "--export-path",
        "/a",
        "--ack-path",
        "/b",
    )
    assert bad_secret.returncode == 2 and "env:" in bad_secret.stderr
    assert "hunter2" not in orderflow_cli(env, "connectors", "list").stdout


def test_connectors_set_keeps_local_folders_apart_from_the_code_locations_folders(
    orderflow_env: OrderflowEnv, test_secret_dirs: Path
) -> None:
    env = orderflow_env
    globex_out, globex_acks = env.dropzones / "globex" / "outbox", env.dropzones / "globex" / "acks"
    for folder in (globex_out, globex_acks):
        folder.mkdir(parents=True)
    local = ["connectors", "set", "--transport", "local"]
    code, _, err = run_cli(
        *local, "--org", "globex", "--export-path", str(globex_out), "--ack-path", str(globex_acks)
    )
    assert code == 0, err
    link = env.dropzones / "evil-acks"
    link.symlink_to(globex_out)
    evil_out = str(env.dropzones / "evil" / "outbox")
    cases = [
        (str(env.store_root / "exports" / "globex" / "D-1"), "the export store"),
        (str(env.home / "orderflow" / "spool" / "evil"), "the spool"),
        (str(test_secret_dirs / "evil"), "the secret folder"),
        (str(env.home / "evil-acks"), "DAGSTER_HOME"),
        (str(link), "through symlinks"),
    ]
    for ack_path, says in cases:
        code, out, err = run_cli(
            *local, "--org", "evil", "--export-path", evil_out, "--ack-path", ack_path
        )
        assert_one_line_refusal(code, err, says)
        assert "saved" not in out
    code, out, _ = run_cli("connectors", "list")
    assert code == 0 and "evil" not in out
    # the folder set aside for dropzones inside DAGSTER_HOME (the demo's) is allowed
    home_dropzones = env.home / "orderflow" / "dropzones" / "evil"
    code, out, err = run_cli(
        *local,
        "--org",
        "evil",
        "--export-path",
        str(home_dropzones / "outbox"),
        "--ack-path",
        str(home_dropzones / "acks"),
    )
    assert code == 0 and "connector of evil saved" in out, err


def test_db_upgrade_on_a_fresh_database(tmp_path: Path) -> None:
    child = dict(os.environ, ORDERFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}")
    done = run_command([str(VENV_BIN / "orderflow-exports"), "db", "upgrade"], child)
    assert done.returncode == 0 and "schema up to date" in done.stdout
    assert REPO_ROOT.is_dir()


# --- bad input: one line on stderr, exit 2, nothing saved ----------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    """The CLI's main in this process (the same code the console script runs)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def set_args(**options: str | None) -> list[str]:
    values: dict[str, str | None] = {
        "org": "acme",
        "transport": "sftp",
        "host": "erp.example.com",
        "port": "22",
        "username": "orderflow",
        "host-key": HOST_KEY,
        "password-ref": "env:ORDERFLOW_SECRET_ACME_PASSWORD",
        "export-path": "/in/acme",
        "ack-path": "/acks/acme",
    }
    values.update({name.replace("_", "-"): value for name, value in options.items()})
    argv = ["connectors", "set"]
    for name, value in values.items():
        if value is not None:
            argv += [f"--{name}", value]
    return argv


def assert_one_line_refusal(code: int, err: str, says: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    # "orderflow-exports: error: ..." or, from argparse, "orderflow-exports connectors set: error:"
    assert len(lines) == 1 and re.match(r"orderflow-exports[a-z ]*: error: ", lines[0]), err
    assert says in lines[0], err


def test_connectors_set_refuses_bad_input(
    engine: Engine, database_url: str, test_secret_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", database_url)
    secrets = test_secret_dirs
    readable = secrets / "acme" / "cli_world_readable"
    readable.parent.mkdir(exist_ok=True)
    readable.write_text("pw")
    readable.chmod(0o644)
    code, _, err = run_cli(
        *set_args(
            org="globex",
            ack_path="/acks/shared",
            export_path="/in/g",
            password_ref="env:ORDERFLOW_SECRET_GLOBEX_PASSWORD",
        )
    )
    assert code == 0, err
    cases: list[tuple[dict[str, str | None], str]] = [
        ({"port": "99999"}, "port 99999 is not between 1 and 65535"),
        ({"port": "-5"}, "port -5"),
        ({"port": "twenty-two"}, "invalid int value"),
        ({"host_key": "not a key"}, "--host-key"),
        ({"host_key": "SHA256:abc"}, "not a SHA256 fingerprint"),
        ({"password_ref": "env:"}, "needs a variable name"),
        ({"password_ref": "file:relative"}, "not an absolute path"),
        ({"password_ref": f"file:{secrets}/acme/missing"}, "cannot open the file"),
        ({"password_ref": "env:AWS_SECRET_ACCESS_KEY"}, "outside org acme's secret scope"),
        ({"password_ref": "env:DAGSTER_PG_PASSWORD"}, "outside org acme's secret scope"),
        ({"password_ref": f"file:{secrets}/globex/key"}, "outside org acme's secret folders"),
        ({"password_ref": "file:/etc/shadow"}, "outside org acme's secret folders"),
        ({"password_ref": f"file:{readable}"}, "mode 0644"),
        ({"password_ref": "hunter2"}, "env:"),
        ({"host": "erp.example.com\nevil"}, "not a host name"),
        ({"ack_deadline_hours": "inf"}, "--ack-deadline-hours"),
        ({"ack_deadline_hours": "nan"}, "--ack-deadline-hours"),
        ({"ack_deadline_hours": "1e6"}, "--ack-deadline-hours"),
        ({"ack_deadline_hours": "0"}, "--ack-deadline-hours"),
        ({"ack_path": "/in/acme"}, "the same folder"),
        ({"ack_path": "/in/acme/acks"}, "lies inside export_path"),
        ({"export_path": "/acks/acme/processed"}, "processed/ folder"),
        ({"export_path": ""}, "export_path is empty"),
        ({"ack_path": "acks"}, "not absolute"),
        ({"export_path": "/in/../etc"}, "'..' component"),
        ({"export_path": "/in/ac\x01me"}, "control characters"),
        ({"ack_path": "/acks/shared"}, "org globex's ack_path"),
        ({"ack_path": "/acks/shared/acme"}, "is nested with org globex's ack_path"),
        ({"transport": "local", "host": None, "port": None}, "a local connector takes no"),
        ({"org": "../x"}, "not allowed"),
    ]
    for options, says in cases:
        code, out, err = run_cli(*set_args(**options))
        assert_one_line_refusal(code, err, says)
        assert "saved" not in out
    for argv, says in [
        (["exports", "list", "--limit", "-1"], "--limit -1"),
        (["exports", "list", "--limit", "0"], "--limit 0"),
        (["exports", "list", "--limit", str(10**12)], "is not between"),
        (["exports", "list", "--org", "../x"], "not allowed"),
        (["exports", "list", "--status", "LOST"], "invalid choice"),
    ]:
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, says)
    code, out, _ = run_cli("connectors", "list")
    assert code == 0 and "globex" in out and "acme" not in out  # nothing of acme was saved
    code, out, _ = run_cli(*set_args())  # the same org with good values is saved
    assert code == 0 and "connector of acme saved" in out


def test_unreachable_database_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", f"postgresql://nobody:pw@127.0.0.1:{port}/none")
    for argv in (["connectors", "list"], ["exports", "list"], ["db", "upgrade"], set_args()):
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, "check ORDERFLOW_DATABASE_URL", exit_code=1)
        assert ":pw@" not in err
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", "not a url")
    code, _, err = run_cli("connectors", "list")
    assert_one_line_refusal(code, err, "check ORDERFLOW_DATABASE_URL", exit_code=1)


def test_missing_schema_says_to_run_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    for argv in (["connectors", "list"], ["exports", "list"], set_args()):
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, "run `orderflow-exports db upgrade`", exit_code=1)


def test_the_installed_command_refuses_bad_input_and_a_missing_schema(tmp_path: Path) -> None:
    # Dagster's import-time preview warnings are not ours; the suite silences them everywhere.
    child = dict(
        os.environ,
        ORDERFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}",
        PYTHONWARNINGS="ignore",
    )
    command = str(VENV_BIN / "orderflow-exports")
    no_schema = run_command([command, "connectors", "list"], child)
    assert_one_line_refusal(no_schema.returncode, no_schema.stderr, "db upgrade", exit_code=1)
    assert run_command([command, "db", "upgrade"], child).returncode == 0
    bad_port = run_command([command, *set_args(port="99999")], child)
    assert_one_line_refusal(bad_port.returncode, bad_port.stderr, "port 99999")
    bad_limit = run_command([command, "exports", "list", "--limit", "-1"], child)
    assert_one_line_refusal(bad_limit.returncode, bad_limit.stderr, "--limit -1")
