"""The org rotation of ack passes and what the next pass starts from (plain summaries)."""

from __future__ import annotations

from orderflow_exports.application.acks.memory import (
    AckPassMemory,
    OrgMemory,
    next_memory,
    problem_digest,
)
from orderflow_exports.application.acks.processor import resume_after, rotate, timed_out_orgs
from orderflow_exports.application.acks.results import AckPassSummary
from orderflow_exports.domain.records import ConnectorConfig


def _configs(*orgs: str) -> list[ConnectorConfig]:
    return [ConnectorConfig(org, "local", f"/zone/{org}/out", f"/zone/{org}/acks") for org in orgs]


def test_rotation_resumes_after_the_last_org_and_serves_slow_orgs_last() -> None:
    configs = _configs("d", "b", "a", "c")

    def order(after: str | None, slow: list[str]) -> list[str]:
        return [c.org_id for c in rotate(configs, after, slow)]

    assert order(None, []) == ["a", "b", "c", "d"]
    assert order("b", []) == ["c", "d", "a", "b"]
    assert order("d", []) == ["a", "b", "c", "d"]
    assert order("bb", ["a"]) == ["c", "d", "b", "a"]


def test_the_next_pass_resumes_only_when_the_budget_left_orgs_unreached() -> None:
    everyone = [AckPassSummary("a"), AckPassSummary("b", timed_out=True)]
    assert resume_after(everyone) is None
    assert timed_out_orgs(everyone) == ["b"]
    cut = [AckPassSummary("a"), AckPassSummary("b"), AckPassSummary("c", not_reached=True)]
    assert resume_after(cut) == "b"
    assert resume_after([AckPassSummary("a", not_reached=True)]) is None
    assert timed_out_orgs(cut) == []


def test_next_memory_keeps_unreached_orgs_and_records_each_problem_once() -> None:
    previous = AckPassMemory({"a": OrgMemory(skipped=["k1"]), "b": OrgMemory(skipped=["k2"])})
    failed = AckPassSummary("a", failure="cannot read", failure_code="IO", memory=OrgMemory())
    unreached = AckPassSummary("b", not_reached=True)
    memory = next_memory([failed, unreached], previous)
    assert memory.orgs["b"].skipped == ["k2"]
    assert memory.orgs["a"].problem == problem_digest(failed) is not None
    assert problem_digest(AckPassSummary("a")) is None
    assert previous.orgs["a"].skipped == ["k1"]  # the previous memory is not changed


def test_the_ack_use_cases_import_no_dagster_or_infrastructure() -> None:
    import ast
    from pathlib import Path

    import orderflow_exports.application.acks as acks

    forbidden = {"dagster", "paramiko", "boto3", "botocore", "sqlalchemy", "psycopg", "psycopg2"}
    files = sorted(Path(acks.__file__).parent.glob("*.py"))
    assert len(files) >= 7, files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & forbidden, (path.name, roots)
