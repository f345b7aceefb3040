"""The operator's commands: show, list --json/--full-errors, backlog, retry's refusals,
connectors show/test/delete and --version; each bad input gets its exit code and one line."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.dagster.test_cli import assert_one_line_refusal, run_cli
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import orderflow_cli
from orderflow_exports_tests.support.sshd import SshdServer


def _free_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _failed_and_sent(env: OrderflowEnv) -> None:
    """acme:D-1 FAILED (missing export folder), acme:D-2 SENT."""
    good = env.add_local_connector("acme")
    env.configs.upsert(replace(good, export_path=str(env.dropzones / "missing")))
    [failed] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert not env.run_export([failed]).success
    env.configs.upsert(good)
    [sent] = env.add_drafts(SampleDraft("acme", "D-2", lines=3))
    assert env.run_export([sent]).success


def test_version_names_ours_and_dagster() -> None:
    code, out, _ = run_cli("--version")
    assert code == 0
    assert out.startswith("orderflow-exports 0.1.0 (dagster 1.13.27)")


def test_list_json_parses_back_and_full_errors_are_not_cut(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    _failed_and_sent(env)
    code, out, err = run_cli("exports", "list", "--json")
    assert code == 0, err
    rows = json.loads(out)
    by_draft = {row["draft_order_id"]: row for row in rows}
    assert by_draft["D-1"]["status"] == "FAILED" and by_draft["D-1"]["error_code"] == "CONFIG"
    assert by_draft["D-2"]["status"] == "SENT" and by_draft["D-2"]["line_count"] == 3
    [sent] = env.exports("acme:D-2")
    assert by_draft["D-2"]["content_sha256"] == sent.content_sha256
    assert by_draft["D-2"]["sent_at"] == sent.sent_at.isoformat()  # type: ignore[union-attr]
    message = by_draft["D-1"]["error_message"]
    assert len(message) > 80
    _, cut, _ = run_cli("exports", "list")
    _, full, _ = run_cli("exports", "list", "--full-errors")
    assert message not in cut and message in full


def test_show_lists_every_attempt_in_full(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    _failed_and_sent(env)
    assert env.run_export(["acme:D-1"]).success  # a second attempt, SENT
    first, second = env.exports("acme:D-1")
    code, out, err = run_cli("exports", "show", "acme:D-1", "--url", "http://dagster:3000")
    assert code == 0, err
    assert out.splitlines()[0] == (
        "acme:D-1  http://dagster:3000/assets/export_json?view=partitions&partition=acme%3AD-1"
    )
    assert f"attempt 1: FAILED  export_id {first.id}" in out
    assert f"attempt 2: SENT  export_id {second.id}" in out
    assert f"error       CONFIG: {first.error_message}" in out  # in full
    assert second.content_sha256 in out and second.filename in out
    assert str(second.dagster_run_id) in out
    code, out, _ = run_cli("exports", "show", "acme:D-1", "--json")
    shown = json.loads(out)
    assert [a["attempt"] for a in shown["attempts"]] == [1, 2]
    assert shown["attempts"][1]["storage_key"] == second.storage_key
    assert shown["ui_url"].endswith("partition=acme%3AD-1")
    code, out, _ = run_cli("exports", "show", "acme:D-404")
    assert code == 0 and "no export attempts" in out
    for key, says in (("acme", "is not ORG:DRAFT"), ("../x:D-1", "not allowed")):
        code, _, err = run_cli("exports", "show", key)
        assert_one_line_refusal(code, err, says)


def test_backlog_gives_the_reason_for_each_draft(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    globex = env.add_local_connector("globex")
    env.configs.upsert(replace(globex, enabled=False))
    env.add_drafts(
        SampleDraft("acme", "A-1"),
        SampleDraft("globex", "G-1"),
        SampleDraft("initech", "I-1"),
        partitions=False,
    )
    code, out, err = run_cli("exports", "backlog", "--json")
    assert code == 0, err
    reasons = {row["draft"]: row["reason"] for row in json.loads(out)}
    assert reasons["acme:A-1"].startswith("not yet ticked")
    assert reasons["globex:G-1"] == "connector disabled"
    assert reasons["initech:I-1"] == "no connector"
    code, out, _ = run_cli("exports", "backlog", "--org", "initech")
    assert code == 0 and out == "initech:I-1  no connector\n"
    env.add_partitions(["acme:A-1"])
    assert env.run_export(["acme:A-1"]).success
    _, out, _ = run_cli("exports", "backlog")
    assert "acme:A-1" not in out  # sent: no longer backlog


def test_retry_refuses_before_contacting_the_deployment(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    _failed_and_sent(env)
    nowhere = f"http://127.0.0.1:{_free_port()}"
    cases = [
        (["--org", "acme", "--draft", "D-2"], "attempt 1 is SENT", 2),
        (["--draft", "D-1"], "--draft needs --org", 2),
        (["--org", "acme"], "give --org and --draft", 2),
        (["--org", "acme", "--draft", "D-1", "--status", "FAILED"], "not both", 2),
        (["--org", "initech", "--draft", "X-1"], "org initech has no connector", 2),
        (["--org", "acme", "--draft", "../D"], "not allowed", 2),
        (["--status", "SENT"], "invalid choice", 2),
        (["--org", "acme", "--draft", "D-1"], "cannot reach the Dagster webserver", 1),
    ]
    for argv, says, exit_code in cases:
        code, out, err = run_cli("exports", "retry", *argv, "--url", nowhere)
        assert_one_line_refusal(code, err, says, exit_code=exit_code)
    code, _, err = run_cli("exports", "retry", "--org", "acme", "--draft", "D-1", "--url", "ftp:x")
    assert_one_line_refusal(code, err, "is not an http(s) URL", exit_code=2)
    # The batch form finds the FAILED one, and only it.
    code, _, err = run_cli("exports", "retry", "--status", "FAILED", "--url", nowhere)
    assert_one_line_refusal(code, err, "cannot reach the Dagster webserver", exit_code=1)
    code, out, _ = run_cli("exports", "retry", "--status", "FAILED", "--org", "globex")
    assert code == 0 and out == "no drafts whose latest export is FAILED\n"


def test_retry_warns_on_ack_timeout(orderflow_env: OrderflowEnv) -> None:
    from datetime import UTC, datetime

    env = orderflow_env
    env.add_local_connector("acme")
    [key] = env.add_drafts(SampleDraft("acme", "D-1"))
    assert env.run_export([key]).success
    [sent] = env.exports(key)
    assert env.ledger.mark_failed(
        sent.id,
        expected=ExportStatus.SENT,
        code="ACK_TIMEOUT",
        message="no ack within 24 h",
        at=datetime.now(UTC),
    )
    code, _, err = run_cli(
        "exports",
        "retry",
        "--org",
        "acme",
        "--draft",
        "D-1",
        "--url",
        f"http://127.0.0.1:{_free_port()}",
    )
    assert code == 1
    warning, error = err.splitlines()
    assert warning.startswith("orderflow-exports: warning: acme:D-1 attempt 1 timed out")
    assert "the ERP may already hold this order" in warning and sent.filename in warning
    assert "cannot reach the Dagster webserver" in error


def test_connectors_show_test_delete(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    code, out, err = run_cli("connectors", "show", "--org", "acme")
    assert code == 0, err
    assert f"export_path           {acme.export_path}" in out
    assert "problems              none" in out
    code, out, err = run_cli("connectors", "test", "--org", "acme")
    assert code == 0, err
    steps = out.splitlines()
    assert [line.split()[0] for line in steps] == ["ok"] * 6
    assert "remove the temp file: removed" in steps[-1]
    assert os.listdir(acme.export_path) == []  # nothing left behind
    # A missing ack folder: the step that fails says FAILED, the command exits 1.
    os.rmdir(acme.ack_path)
    code, out, err = run_cli("connectors", "test", "--org", "acme")
    assert out.splitlines()[-1].startswith("FAILED  list ack folder: ")
    assert_one_line_refusal(code, err, "failed at: list ack folder", exit_code=1)
    for argv, says in (
        (["connectors", "show", "--org", "nobody"], "org nobody has no connector"),
        (["connectors", "test", "--org", "nobody"], "org nobody has no connector"),
        (["connectors", "delete", "--org", "acme"], "needs --yes"),
        (["connectors", "delete", "--org", "../x", "--yes"], "not allowed"),
    ):
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, says)
    code, out, _ = run_cli("connectors", "delete", "--org", "acme", "--yes")
    assert code == 0 and "connector of acme deleted" in out
    assert env.configs.get("acme") is None


def test_new_commands_say_what_to_do_about_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = [
        ["exports", "show", "acme:D-1"],
        ["exports", "backlog"],
        ["exports", "retry", "--org", "acme", "--draft", "D-1"],
        ["connectors", "show", "--org", "acme"],
        ["connectors", "test", "--org", "acme"],
        ["connectors", "delete", "--org", "acme", "--yes"],
        ["exports", "list", "--json"],
    ]
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    for argv in commands:
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, "run `orderflow-exports db upgrade`", exit_code=1)
    url = f"postgresql://nobody:pw@127.0.0.1:{_free_port()}/none"
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", url)
    for argv in commands:
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, "check ORDERFLOW_DATABASE_URL", exit_code=1)
        assert ":pw@" not in err


@pytest.mark.slow
def test_the_installed_command_shows_its_version_and_json(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    _failed_and_sent(env)
    version = orderflow_cli(env, "--version")
    assert version.returncode == 0 and "dagster 1.13.27" in version.stdout
    listed = orderflow_cli(env, "exports", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {row["status"] for row in json.loads(listed.stdout)} == {"FAILED", "SENT"}


@pytest.mark.slow
def test_connectors_test_over_sftp_pins_the_host_key(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer
) -> None:
    env = orderflow_env
    root = sshd_server.root / f"conntest{os.getpid()}_{time.monotonic_ns()}"
    for org in ("acme", "globex"):
        for sub in ("outbox", "acks"):
            (root / org / sub).mkdir(parents=True)
    env.configs.upsert(
        sshd_server.connector_config("acme", str(root / "acme/outbox"), str(root / "acme/acks"))
    )
    env.configs.upsert(
        sshd_server.connector_config(
            "globex",
            str(root / "globex/outbox"),
            str(root / "globex/acks"),
            host_key=sshd_server.other_host_key_line,  # not the key the server presents
        )
    )
    code, out, err = run_cli("connectors", "test", "--org", "acme")
    assert code == 0, out + err
    assert [line.split()[0] for line in out.splitlines()] == ["ok"] * 6
    assert "connect (pinned host key, secret reference): sftp://" in out
    assert os.listdir(root / "acme/outbox") == []  # the temp file was removed
    code, out, err = run_cli("connectors", "test", "--org", "globex")
    assert out.splitlines()[-1].startswith(
        "FAILED  connect (pinned host key, secret reference): [HOST_KEY] "
    )
    assert_one_line_refusal(code, err, "failed at: connect", exit_code=1)
    assert os.listdir(root / "globex/outbox") == []  # nothing written to an unverified server
