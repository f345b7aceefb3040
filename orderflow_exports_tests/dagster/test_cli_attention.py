"""What needs an operator, in the CLI: retry hints, ``exports attention``, ``acks errors``.

Exports run through the real export job, acks through the real ack pass (local folders and the
real sshd); the commands run through the CLI's ``main`` as the console script does.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.settings import AckSettings
from orderflow_exports.cli.export_views import FORCE_CONFIG, resend_command, retry_hint
from orderflow_exports.demo import SampleDraft
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus
from orderflow_exports_tests.dagster.test_cli import assert_one_line_refusal, run_cli
from orderflow_exports_tests.support.orderflow_env import OrderflowEnv
from orderflow_exports_tests.support.processes import orderflow_cli
from orderflow_exports_tests.support.sshd import SshdServer

PLAIN_RESEND = "orderflow-exports exports retry --org %s --draft %s"


def exported(env: OrderflowEnv, org_id: str, draft_id: str) -> ExportRecord:
    """One draft through the real export job; returns its SENT row."""
    [key] = env.add_drafts(SampleDraft(org_id, draft_id))
    assert env.run_export([key]).success
    record = env.exports(key)[-1]
    assert record.status is ExportStatus.SENT
    return record


def drop_ack(ack_path: str, name: str, export_id: str, status: str, message: str | None) -> None:
    body = {
        "export_id": export_id,
        "status": status,
        "erp_order_number": "SO-1" if status == "ACKED" else None,
        "message": message,
        "errors": [],
        "received_at": "2026-11-26T10:00:00Z",
    }
    temp = Path(ack_path) / f".{name}.tmp"
    temp.write_text(json.dumps(body), encoding="utf-8")
    temp.rename(Path(ack_path) / name)


def ack_pass(env: OrderflowEnv, config: ConnectorConfig, *, later: timedelta = timedelta()) -> None:
    """The real ack pass over one org, ``later`` after now (to pass its ack deadline)."""
    processor = AckProcessor(
        env.ledger, AckSettings(settle_seconds=0), clock=lambda: datetime.now(UTC) + later
    )
    sessions = PooledDropzoneConnector()
    try:
        summary = processor.process_org(config, sessions)
    finally:
        sessions.close()
    assert summary.failure is None, summary.failure


def hint_line(out: str, key: str) -> str:
    [line] = [line for line in out.splitlines() if line.startswith(f"{key} ")]
    return line


# --- retry hints ---------------------------------------------------------------------------------


def test_timeout_and_rejection_hints_say_what_to_check(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    timed_out = exported(env, "acme", "D-1")
    rejected = exported(env, "acme", "D-2")
    drop_ack(acme.ack_path, "ack-D-2.json", rejected.id, "FAILED", "credit hold \x1b[2J")
    ack_pass(env, acme, later=timedelta(hours=25))  # past acme's 24 h deadline
    assert env.exports("acme:D-1")[-1].error_code == "ACK_TIMEOUT"
    assert env.exports("acme:D-2")[-1].error_code == "ERP_REJECTED"

    code, out, err = run_cli("exports", "list", "--status", "FAILED")
    assert code == 0, err
    timeout_hint = hint_line(out.split("\n\n")[-1], "acme:D-1")
    assert "no ack within the org's deadline. Check the ERP first: it may hold this order" in (
        timeout_hint
    )
    assert f"export id {timed_out.id} / file {timed_out.filename}" in timeout_hint
    assert f"{acme.ack_path}/error/" in timeout_hint
    # The latest attempt is FAILED: a plain re-send makes a new one, no force needed.
    assert (
        "Re-send only if it does not (no force needed: the latest attempt is FAILED): "
        + PLAIN_RESEND % ("acme", "D-1")
    ) in timeout_hint
    assert "--force" not in timeout_hint
    assert "never declared while the org's ack folder cannot be read" in timeout_hint
    rejected_hint = hint_line(out.split("\n\n")[-1], "acme:D-2")
    assert 'the ERP refused it: "ERP rejected the order: credit hold ' in rejected_hint
    assert "a re-send makes a new attempt: " + PLAIN_RESEND % ("acme", "D-2") in rejected_hint
    assert "Check the ERP first" not in rejected_hint
    assert "\x1b" not in out  # the ERP's text never reaches the terminal raw


def test_superseded_attempt_needs_no_action(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    env.add_local_connector("acme")
    first = exported(env, "acme", "D-1")
    assert env.run_export(["acme:D-1"], force=True).success
    [superseded, forced] = env.exports("acme:D-1")
    assert superseded.id == first.id and superseded.error_code == "SUPERSEDED"
    assert retry_hint(superseded) == "no action needed: a forced export replaced this attempt"
    code, out, _ = run_cli("exports", "list")
    assert code == 0 and forced.status is ExportStatus.SENT
    assert "FAILED —" not in out  # the failed attempt is not the latest: no hint at all
    # Over a SENT or ACKED latest only a forced run sends again; the hint names --force and,
    # for the UI, the run config this test forced with.
    forced_command = resend_command("acme", "D-1", force=True)
    assert "exports retry --org acme --draft D-1 --force" in forced_command
    assert f"`{FORCE_CONFIG}`" in forced_command
    assert yaml.safe_load(FORCE_CONFIG) == {"ops": {"export_json": {"config": {"force": True}}}}


# --- exports attention ---------------------------------------------------------------------------


def test_attention_lists_each_draft_that_needs_a_person_once(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    env.add_local_connector("globex", export_path=str(env.dropzones / "globex" / "missing"))
    exported(env, "acme", "D-1")
    rejected = exported(env, "acme", "D-2")
    drop_ack(acme.ack_path, "ack-D-2.json", rejected.id, "FAILED", "unknown customer")
    ack_pass(env, acme, later=timedelta(hours=25))
    exported(env, "acme", "D-3")  # SENT after the pass: waiting for its ack, nothing to do
    [broken] = env.add_drafts(SampleDraft("globex", "G-1"))
    assert not env.run_export([broken]).success  # its export folder is missing: PERMANENT

    code, out, err = run_cli("exports", "attention")

    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["acme:D-1", "acme:D-2", "globex:G-1"]
    assert "FAILED ACK_TIMEOUT" in lines[0] and "Check the ERP first" in lines[0]
    assert "FAILED ERP_REJECTED" in lines[1] and "unknown customer" in lines[1]
    globex = lines[2]
    assert "automatic requests stopped at " in globex and "(PERMANENT: " in globex
    assert "export folder" in globex  # the last reason, as the run recorded it
    assert "latest export attempt 1 FAILED" in globex
    assert globex.endswith(
        "re-send: " + PLAIN_RESEND % ("globex", "G-1") + "  (or in the UI: "
        "/assets/export_json?view=partitions&partition=globex:G-1 → Materialize)"
    )
    code, out, _ = run_cli("exports", "attention", "--org", "globex")
    assert code == 0 and [line.split(" ")[0] for line in out.splitlines()] == ["globex:G-1"]
    code, out, _ = run_cli("exports", "attention", "--org", "initech")
    assert code == 0 and out == "no drafts need a person\n"


# --- acks errors ---------------------------------------------------------------------------------


def test_acks_errors_lists_local_error_folders_and_goes_on_past_a_broken_org(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    env.add_local_connector("globex")  # readable, nothing ever refused
    env.add_local_connector("hooli", enabled=False)
    initech = env.add_local_connector("initech")
    Path(initech.ack_path).rmdir()  # unreadable: its line says so, the others are listed
    (Path(acme.ack_path) / "broken.json").write_text("{not json", encoding="utf-8")
    drop_ack(acme.ack_path, "stranger.json", str(uuid.uuid4()), "ACKED", None)
    ack_pass(env, acme)
    errors = Path(acme.ack_path) / "error"
    assert (errors / "broken.json.error.txt").is_file()
    # The folder belongs to the ERP's side: names and notes there may hold anything.
    (errors / "evil\x1b[31m.json").write_text("{}")
    (errors / "evil\x1b[31m.json.error.txt").write_text("code: X\x1b]0;pwned\x07\nreason: r\x1b[2J")
    (errors / "big.json").write_text("{}")
    (errors / "big.json.error.txt").write_text("reason: " + "x" * 5000)
    (errors / "lonely.json").write_text("{}")
    (errors / "linked.json").write_text("{}")
    (errors / "linked.json.error.txt").symlink_to("/etc/passwd")
    old = time.time() - 3600
    os.utime(errors / "broken.json", (old, old))

    code, out, err = run_cli("acks", "errors")

    assert code == 1
    assert_one_line_refusal(code, err, "1 org(s) could not be listed: initech", exit_code=1)
    assert "\x1b" not in out and "\x07" not in out
    assert re.search(r"^acme: 6 rejected ack\(s\) in .*/acme/acks/error/, newest first$", out, re.M)
    broken = hint_line(out, "  broken.json")
    assert "MALFORMED: " in broken and "not valid JSON" in broken and "(rejected at 20" in broken
    assert "UNKNOWN_EXPORT: " in hint_line(out, "  stranger.json")
    assert out.rstrip().splitlines()[6].startswith("  broken.json")  # the oldest comes last
    assert "evil\\x1b[31m.json  X\\x1b]0;pwned\\x07: r\\x1b[2J" in out
    assert "big.json  (its note is over 2048 bytes; not shown)" in out
    assert "lonely.json  (no note beside it)" in out
    assert "linked.json  (its note is a symlink; not read)" in out and "root:" not in out
    assert re.search(r"^globex: no rejected acks \(.*/globex/acks/error/ does not exist", out, re.M)
    assert re.search(r"^initech: cannot list its error folder: \[CONFIG\] ", out, re.M)
    assert "hooli" not in out  # disabled, and not asked for
    assert out.index("acme:") < out.index("globex:") < out.index("initech:")

    code, out, err = run_cli("acks", "errors", "--org", "acme", "--limit", "2")
    assert code == 0, err
    assert out.splitlines()[-1] == "  ... and 4 more (raise --limit to see them)"
    assert "globex" not in out and "initech" not in out
    code, out, _ = run_cli("acks", "errors", "--org", "hooli")  # asked for by name: listed
    assert code == 0 and out.startswith("hooli: no rejected acks")
    for argv, says in [
        (["acks", "errors", "--org", "nobody"], "org nobody has no connector"),
        (["acks", "errors", "--org", "../x"], "not allowed"),
        (["acks", "errors", "--limit", "0"], "--limit 0 is not between"),
        (["exports", "attention", "--limit", "-1"], "--limit -1 is not between"),
        (["exports", "attention", "--org", "a b"], "--org"),
    ]:
        code, out, err = run_cli(*argv)
        assert_one_line_refusal(code, err, says)


def test_acks_errors_over_sftp_verifies_the_host_key(
    orderflow_env: OrderflowEnv, sshd_server: SshdServer
) -> None:
    env = orderflow_env
    root = sshd_server.root / f"cli{os.getpid()}_{time.monotonic_ns()}"
    for org in ("acme", "globex"):
        for sub in ("outbox", "acks"):
            (root / org / sub).mkdir(parents=True)
    acme = sshd_server.connector_config("acme", str(root / "acme/outbox"), str(root / "acme/acks"))
    impostor = sshd_server.connector_config(
        "globex",
        str(root / "globex/outbox"),
        str(root / "globex/acks"),
        host_key=sshd_server.other_host_key_line,  # not the key the server presents
    )
    env.configs.upsert(acme)
    env.configs.upsert(impostor)
    (root / "acme/acks/broken.json").write_text('{"export_id": 1', encoding="utf-8")
    ack_pass(env, acme)
    assert (root / "acme/acks/error/broken.json.error.txt").is_file()
    (root / "globex/acks/error").mkdir()
    (root / "globex/acks/error/secret.json").write_text("{}")

    code, out, err = run_cli("acks", "errors")

    assert code == 1
    assert_one_line_refusal(code, err, "could not be listed: globex", exit_code=1)
    assert re.search(r"^acme: 1 rejected ack\(s\) in ", out, re.M)
    assert "MALFORMED: " in hint_line(out, "  broken.json")
    assert re.search(r"^globex: cannot list its error folder: \[HOST_KEY\] ", out, re.M)
    assert "secret.json" not in out  # nothing is read from a server whose key does not match


def test_acks_errors_lists_a_shared_folder_only_for_the_org_that_was_there_first(
    orderflow_env: OrderflowEnv,
) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    # Written later, past `connectors set` (which refuses it), as another tool could.
    env.configs.upsert(
        ConnectorConfig(
            org_id="globex",
            transport="local",
            export_path=str(env.dropzones / "globex" / "outbox"),
            ack_path=acme.ack_path,
        )
    )
    (Path(acme.ack_path) / "error").mkdir()
    (Path(acme.ack_path) / "error" / "acme-order.json").write_text("{}")

    code, out, err = run_cli("acks", "errors")

    assert code == 1
    assert_one_line_refusal(code, err, "could not be listed: globex", exit_code=1)
    assert "acme-order.json" in out  # acme's own folder, as the ack pass keeps processing it
    refused = r"^globex: cannot list its error folder: connector config refused: .*org acme's"
    assert re.search(refused, out, re.M)


# --- the CLI's conventions -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_installed_command_runs_the_new_commands(orderflow_env: OrderflowEnv) -> None:
    env = orderflow_env
    acme = env.add_local_connector("acme")
    (Path(acme.ack_path) / "broken.json").write_text("{", encoding="utf-8")
    ack_pass(env, acme)
    listed = orderflow_cli(env, "acks", "errors")
    assert listed.returncode == 0, listed.stderr
    assert "broken.json  MALFORMED: " in listed.stdout
    attention = orderflow_cli(env, "exports", "attention")
    assert attention.returncode == 0, attention.stderr
    assert attention.stdout == "no drafts need a person\n"


def test_new_commands_say_to_run_db_upgrade_on_a_missing_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    for argv in (["acks", "errors"], ["exports", "attention"]):
        code, _, err = run_cli(*argv)
        assert_one_line_refusal(code, err, "run `orderflow-exports db upgrade`", exit_code=1)
