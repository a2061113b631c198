"""Hand-offs between stages: the next task is sent by name, after commit.

Stages never import ``syncworker.tasks``; they call these functions, which queue the
task once the current transaction commits (at once outside one), so a worker never
reads a row that is not there yet. Queues come from ``CELERY_TASK_ROUTES``.

Nobody reads these tasks' results, so none are stored or subscribed to: a web process
that subscribed would keep reconnecting to a Redis that went away and then refuse to
send anything until restarted. A broker that cannot take the message raises
``QueueUnavailable``: a deliberate action answers 503 with it; inside the pipeline the
task fails, and the recovery sweep re-queues a deployment it left queued or applying.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError

from gitops_site.celery import app

POLL = "syncworker.poll_repository"
FETCH = "syncworker.fetch_services"
APPLY = "syncworker.apply_deployment"
NOTIFY = "syncworker.notify_deployment"
CHECK_HEALTH = "syncworker.check_health"
DRIFT = "syncworker.check_drift"


class QueueUnavailable(RuntimeError):
    """The broker (Redis) could not take the message: nothing was queued."""


def _publish(
    task: str, args: tuple[Any, ...], kwargs: dict[str, Any], countdown: float | None
) -> None:
    try:
        app.send_task(task, args=args, kwargs=kwargs, countdown=countdown, ignore_result=True)
    except OperationalError as exc:
        # kombu's message names the broker's address; the URL (and its password) stays out.
        raise QueueUnavailable(
            f"the task broker is unreachable ({type(exc).__name__}): {task} not queued"
        ) from None


def _send(task: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
    transaction.on_commit(lambda: _publish(task, args, kwargs, countdown))


def poll(
    repository_id: int, *, trigger: str, force: bool = False, service_ids: list[int] | None = None
) -> None:
    kwargs: dict[str, Any] = {"trigger": trigger}
    if force:
        kwargs["force"] = True
    if service_ids is not None:
        kwargs["service_ids"] = service_ids
    _send(POLL, repository_id, **kwargs)


def fetch(deployment_ids: Sequence[int]) -> None:
    """Fetch tasks for these deployments, ``GITOPS_FETCH_BATCH`` to a task."""
    size = settings.GITOPS["FETCH_BATCH"]
    ids = list(deployment_ids)
    for start in range(0, len(ids), size):
        _send(FETCH, ids[start : start + size])


def apply(deployment_id: int) -> None:
    _send(APPLY, deployment_id)


def notify(deployment_id: int) -> None:
    _send(NOTIFY, deployment_id)


def check_health(deployment_id: int, *, countdown: float | None = None) -> None:
    _send(CHECK_HEALTH, deployment_id, countdown=countdown)
