"""Celery tasks: thin wrappers that take ids, re-read rows and call plain functions in
syncworker/pipeline. Each is safe to run twice (acks_late redelivers after a crash):
the functions guard on the rows' state.

Only named transient errors are retried, with bounded exponential backoff and jitter;
a permanent error is recorded at once.
"""

from __future__ import annotations

import logging
import random
import socket

from celery import Task, shared_task

from syncworker.models import Repository
from syncworker.pipeline import deploying, fetching, notify, polling, recovery

log = logging.getLogger(__name__)
MAX_RETRIES = 8


def backoff(retries: int, hint: float | None = None) -> float:
    """Seconds before retry number ``retries + 1``: the server's hint when it gave one,
    else 1, 2, 4 … capped at 5 minutes, with ±50% jitter so workers do not stampede."""
    if hint is not None:
        return min(max(hint, 1.0), 900.0)
    return min(2.0**retries, 300.0) * random.uniform(0.5, 1.5)  # noqa: S311


@shared_task(name="syncworker.ping")
def ping() -> dict[str, object]:
    """Answer from a worker with what it sees, so readiness checks and tests can tell
    that a worker is up and reads the same database."""
    return {"hostname": socket.gethostname(), "repositories": Repository.objects.count()}


@shared_task(name="syncworker.poll_repository", bind=True, acks_late=True, max_retries=3)
def poll_repository(
    self: Task,
    repository_id: int,
    trigger: str = "poll",
    force: bool = False,
    service_ids: list[int] | None = None,
) -> dict[str, object]:
    result = polling.poll_repository(
        repository_id, trigger=trigger, force=force, service_ids=service_ids
    )
    if result.error and result.transient and trigger != "poll":
        # A webhook or "sync now" deserves a retry; a scheduled poll simply waits for
        # the next tick (the repository's backoff already records the failure).
        raise self.retry(countdown=backoff(self.request.retries, result.retry_after))
    return {
        "commit": result.commit,
        "deployments": result.deployments,
        "error": result.error,
        "skipped": result.skipped,
    }


@shared_task(name="syncworker.fetch_service", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def fetch_service(self: Task, deployment_id: int) -> dict[str, object]:
    result = fetching.fetch_and_render(deployment_id)
    if result.transient:
        if self.request.retries >= MAX_RETRIES:
            deploying.fail_after_retries(deployment_id, result.error)
        else:
            raise self.retry(countdown=backoff(self.request.retries, result.retry_after))
    return {"error": result.error, "skipped": result.skipped}


@shared_task(name="syncworker.apply_deployment", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def apply_deployment(self: Task, deployment_id: int) -> dict[str, object]:
    result = deploying.apply_deployment(deployment_id)
    if result.transient:
        if self.request.retries >= MAX_RETRIES:
            deploying.fail_after_retries(deployment_id, result.error)
        else:
            raise self.retry(countdown=backoff(self.request.retries, result.retry_after))
    return {"status": result.status, "error": result.error, "skipped": result.skipped}


@shared_task(name="syncworker.notify_deployment", acks_late=True)
def notify_deployment(deployment_id: int) -> int:
    return notify.notify(deployment_id)


@shared_task(name="syncworker.requeue_stuck", acks_late=True)
def requeue_stuck() -> list[int]:
    return recovery.requeue_stuck()
