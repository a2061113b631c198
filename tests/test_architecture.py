"""The corridors of the house: which floor may import which (read from the source, so a
lazy import inside a function counts too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncworker.models import Deployment
from syncworker.pipeline import handoff

PACKAGE = Path(__file__).resolve().parent.parent / "syncworker"


def imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(folder)
        for name in imports_of(path)
        if name.startswith(forbidden)
    ]


def test_only_tasks_py_knows_the_celery_task_objects() -> None:
    found = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "tasks.py"
        for name in imports_of(path)
        if name.startswith("syncworker.tasks") or name == "syncworker.tasks"
    ]
    assert found == []


def test_the_kubernetes_vocabulary_is_the_ground_floor() -> None:
    assert offenders("kube", ("syncworker.", "django", "celery")) == []


def test_render_and_applyers_never_import_each_other() -> None:
    assert offenders("render", ("syncworker.applyers", "syncworker.pipeline")) == []
    assert offenders("applyers", ("syncworker.render", "syncworker.pipeline")) == []


def test_only_the_lifecycle_writes_a_deployment_status() -> None:
    writers = {
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"update", "create", "bulk_update", "get_or_create"}
        and any(k.arg in {"status", "reason"} for k in node.keywords)
    }
    assert writers == {"pipeline/lifecycle.py"}


@pytest.mark.parametrize(
    "name",
    [handoff.POLL, handoff.FETCH, handoff.APPLY, handoff.NOTIFY],
)
def test_every_hand_off_names_a_registered_task(name: str) -> None:
    from gitops_site.celery import app

    app.loader.import_default_modules()
    assert name in app.tasks


def test_every_failure_reason_is_one_of_the_fixed_choices() -> None:
    assert {"render", "fetch", "conflict", "install", "apply", "health", "prune"} <= set(
        Deployment.Reason.values
    )
    assert {"retries", "superseded", "source", "cluster"} <= set(Deployment.Reason.values)
