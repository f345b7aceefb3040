"""Checks an exported order against the published JSON Schema, as a receiving ERP would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "orderflow_export_json_v1.schema.json"
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class CheckedOrder:
    """What the simulator learnt from an order file: its ids and what is wrong with it."""

    export_id: str | None
    org_id: str | None
    draft_order_id: str | None
    problems: list[tuple[str, int | None]] = field(default_factory=list)


@lru_cache(maxsize=1)
def _validator() -> Any:
    # jsonschema is loaded only by the simulator, never by the code location.
    from jsonschema import Draft202012Validator

    text = resources.files("orderflow_exports.schemas").joinpath(SCHEMA_FILE).read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _line_no(document: Any, path: list[Any]) -> int | None:
    if len(path) >= 2 and path[0] == "lines" and isinstance(path[1], int):
        try:
            line_no = document["lines"][path[1]].get("line_no")
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        return line_no if isinstance(line_no, int) else None
    return None


def _text(document: dict[str, Any], *keys: str) -> str | None:
    value: Any = document
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def check_order(data: bytes) -> CheckedOrder:
    """Parse ``data`` and validate it; a file that is not a JSON object has no export id."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return CheckedOrder(None, None, None, [(f"not JSON: {exc}", None)])
    if not isinstance(document, dict):
        return CheckedOrder(None, None, None, [("not a JSON object", None)])
    problems: list[tuple[str, int | None]] = []
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors[:MAX_PROBLEMS]:
        path = list(error.absolute_path)
        where = "/".join(str(p) for p in path) or "(document)"
        problems.append((f"{where}: {error.message[:200]}", _line_no(document, path)))
    return CheckedOrder(
        _text(document, "export", "export_id"),
        _text(document, "org_id"),
        _text(document, "order", "draft_order_id"),
        problems,
    )
