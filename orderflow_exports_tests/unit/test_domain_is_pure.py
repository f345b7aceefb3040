"""The domain package imports no Dagster, paramiko, boto3 or SQLAlchemy (checked on its source)."""

import ast
from pathlib import Path

import orderflow_exports.domain as domain

FORBIDDEN = {
    "dagster",
    "dagster_aws",
    "dagster_postgres",
    "paramiko",
    "boto3",
    "botocore",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "psycopg2",
}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_modules_import_no_infrastructure() -> None:
    files = sorted(Path(domain.__file__).parent.glob("*.py"))
    assert len(files) >= 7, files
    offenders = {f.name: _imported_roots(f) & FORBIDDEN for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_domain_imports_only_domain_from_this_project() -> None:
    for path in Path(domain.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "orderflow_exports"
            ):
                assert (node.module or "").startswith("orderflow_exports.domain"), path
