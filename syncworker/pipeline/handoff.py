"""Hand-offs between stages: the next task is sent by name, after commit.

Stages never import ``syncworker.tasks``; they call these functions, which queue the
task once the current transaction commits (at once outside one), so a worker never
reads a row that is not there yet. Queues come from ``CELERY_TASK_ROUTES``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from gitops_site.celery import app

POLL = "syncworker.poll_repository"
FETCH = "syncworker.fetch_service"
APPLY = "syncworker.apply_deployment"
NOTIFY = "syncworker.notify_deployment"
DRIFT = "syncworker.check_drift"


def _send(task: str, *args: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: app.send_task(task, args=args, kwargs=kwargs))


def poll(
    repository_id: int, *, trigger: str, force: bool = False, service_ids: list[int] | None = None
) -> None:
    kwargs: dict[str, Any] = {"trigger": trigger}
    if force:
        kwargs["force"] = True
    if service_ids is not None:
        kwargs["service_ids"] = service_ids
    _send(POLL, repository_id, **kwargs)


def fetch(deployment_id: int) -> None:
    _send(FETCH, deployment_id)


def apply(deployment_id: int) -> None:
    _send(APPLY, deployment_id)


def notify(deployment_id: int) -> None:
    _send(NOTIFY, deployment_id)
