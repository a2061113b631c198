"""What a statement reads, from PostgreSQL's own plan: an execute wrapper that runs every
statement first under ``EXPLAIN (ANALYZE, BUFFERS)`` inside a savepoint (or transaction)
that is rolled back, so the plan is the one of the real state at that moment, then for
real. For tests that bound what a stage reads and for ``bench/sql_plans.py``.

Per statement: rows returned (rows written, for a write), rows read (every scan node's
rows out plus those it removed by filter or recheck, times its loops: a sequential scan
of a table counts all of its rows), execution time and the scans, by index or table.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan"}
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+\b|%s")
_LISTS = re.compile(r"\((?:\?, )*\?\)")


class Explained:
    """An execute wrapper: runs each statement under EXPLAIN (ANALYZE, BUFFERS) in a
    rolled-back savepoint (or transaction), records the plan's figures, then runs it."""

    def __init__(self) -> None:
        self.stage = ""
        self.records: list[dict[str, Any]] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if not many and sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
            self._explain(context["cursor"], context["connection"], sql, params)
        return execute(sql, params, many, context)

    def _explain(self, cursor: Any, connection: Any, sql: str, params: Any) -> None:
        inside = connection.in_atomic_block
        cursor.execute("SAVEPOINT explained" if inside else "BEGIN")
        try:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
            (plan,) = cursor.fetchone()
        finally:
            cursor.execute("ROLLBACK TO SAVEPOINT explained" if inside else "ROLLBACK")
        if isinstance(plan, str):
            plan = json.loads(plan)
        top = plan[0]
        root = top["Plan"]
        self.records.append(
            {
                "stage": self.stage,
                "caller": _caller(),
                "shape": _shape(sql),
                "rows": _returned(root),
                "rows_read": _rows_read(root),
                "ms": top["Execution Time"],
                "buffers": root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0),
                "scans": sorted(_scans(root)),
                "plan": root,
            }
        )


def _shape(sql: str) -> str:
    """The statement with its values and lists of values elided."""
    return _LISTS.sub("(...)", _LITERALS.sub("?", " ".join(sql.split()).replace('"', "")))


def _caller() -> str:
    """The innermost function of the product that sent the statement."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename)
        if "syncworker" in path.parts:
            return f"{path.stem}.{frame.name}:{frame.lineno}"
    return "?"


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _returned(root: dict[str, Any]) -> int:
    if root["Node Type"] == "ModifyTable":
        # Rows written: the modify node returns none without RETURNING.
        return int(sum(n["Actual Rows"] * n["Actual Loops"] for n in root.get("Plans", [])[:1]))
    return int(root["Actual Rows"] * root["Actual Loops"])


def deployment_rows_read(root: dict[str, Any]) -> int:
    """The rows a plan read from the deployment table (the history and the backlog)."""
    return _rows_read(root, relation="syncworker_deployment")


def _rows_read(root: dict[str, Any], relation: str = "") -> int:
    total = 0.0
    for node in _nodes(root):
        if node["Node Type"] in _SCANS and relation in ("", node.get("Relation Name")):
            seen = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            seen += node.get("Rows Removed by Index Recheck", 0)
            total += seen * node["Actual Loops"]
    return int(total)


def _scans(root: dict[str, Any]) -> set[str]:
    found = set()
    for node in _nodes(root):
        if node["Node Type"] in _SCANS:
            where = node.get("Index Name") or node.get("Relation Name", "")
            found.add(f"{node['Node Type']} {where}".strip())
    return found


@contextmanager
def explained() -> Iterator[Explained]:
    from django.db import connection

    wrapper = Explained()
    with connection.execute_wrapper(wrapper):
        yield wrapper
