"""The inner layers import no infrastructure (checked on their source, subpackages included).

``domain/`` and ``application/`` import no Dagster, paramiko, boto3 or SQLAlchemy; the domain
imports only the domain from this project, and use cases only the domain and other use cases
(adapters and Dagster wiring plug into them, never the other way round).
"""

import ast
import re
from pathlib import Path

import orderflow_exports.application as application
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


def _modules(package: object) -> list[Path]:
    return sorted(Path(package.__file__).parent.rglob("*.py"))  # type: ignore[attr-defined]


def _project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("orderflow_exports"):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("orderflow_exports")}
    return found


def test_use_cases_import_no_infrastructure_and_no_dagster() -> None:
    files = _modules(application)
    assert len(files) >= 8, files
    offenders = {str(f): _imported_roots(f) & FORBIDDEN for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_use_cases_import_only_the_domain_and_other_use_cases() -> None:
    allowed = ("orderflow_exports.domain", "orderflow_exports.application")
    offenders = {
        str(f): sorted(m for m in _project_imports(f) if not m.startswith(allowed))
        for f in _modules(application)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checks_see_an_offending_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    import dagster as dg\n    from orderflow_exports.adapters.sql import x\n"
    )
    assert _imported_roots(bad) & FORBIDDEN == {"dagster"}
    assert _project_imports(bad) == {"orderflow_exports.adapters.sql"}


# Dagster wiring builds clients in its resources and leaves the work to adapters: no transport
# or SQL library is imported elsewhere in defs/, and no SQL is written there.
_WIRING_CLIENTS = FORBIDDEN - {"dagster", "dagster_aws", "dagster_postgres"}
_RESOURCE_MODULES = {"resources.py"}
_SQL_CALLS = re.compile(r"(?<![\w.])(?:text|select|insert|update|delete)\(|\.execute\(")


def test_wiring_leaves_sql_and_transports_to_the_adapters() -> None:
    # ``orderflow_exports.defs`` is also the code location's Definitions: find the package by path.
    files = sorted((Path(application.__file__).parent.parent / "defs").rglob("*.py"))
    assert len(files) >= 10, files
    offenders = {}
    for path in files:
        roots = _imported_roots(path) & _WIRING_CLIENTS
        if path.name in _RESOURCE_MODULES:
            roots -= {"sqlalchemy"}  # the database resource builds the engine
        source = path.read_text(encoding="utf-8")
        sql = _SQL_CALLS.findall(source)
        if roots or sql:
            offenders[str(path)] = (sorted(roots), sql)
    assert offenders == {}


def test_the_sql_check_sees_sql_and_not_names_that_end_alike() -> None:
    assert _SQL_CALLS.findall('conn.execute(text("SELECT 1"))') == [".execute(", "text("]
    assert _SQL_CALLS.findall("stmt = select(table)") == ["select("]
    assert _SQL_CALLS.findall("tick_text(x); check.refusal_text(); self.update_cursor(c)") == []
