"""Celery tasks: thin wrappers over the stages of ``syncworker.pipeline.chain``. They take
ids; the stages re-read rows and guard on their state, so each task is safe to run twice
(acks_late redelivers after a crash). The only module that knows Celery's task objects:
stages hand off to each other by task name (``pipeline.handoff``).

Only named transient errors are retried, with bounded exponential backoff and jitter;
a permanent error is recorded at once.
"""

from __future__ import annotations

import logging
import random
import socket

from celery import Task, shared_task

from syncworker.models import Deployment, Repository
from syncworker.pipeline import chain, handoff, lifecycle, recovery

log = logging.getLogger(__name__)
MAX_RETRIES = 8


def backoff(retries: int, hint: float | None = None) -> float:
    """Seconds before retry number ``retries + 1``: the server's hint when it gave one,
    else 1, 2, 4 … capped at 5 minutes, with ±50% jitter so workers do not stampede."""
    if hint is not None:
        return min(max(hint, 1.0), 900.0)
    return min(2.0**retries, 300.0) * random.uniform(0.5, 1.5)  # noqa: S311


@shared_task(name="syncworker.ping", ignore_result=False)
def ping() -> dict[str, object]:
    """Answer from a worker with what it sees, so readiness checks and tests can tell
    that a worker is up and reads the same database."""
    return {"hostname": socket.gethostname(), "repositories": Repository.objects.count()}


@shared_task(name="syncworker.poll_repository", bind=True, acks_late=True, max_retries=3)
def poll_repository(
    self: Task,
    repository_id: int,
    trigger: str = Deployment.Trigger.POLL,
    force: bool = False,
    service_ids: list[int] | None = None,
) -> dict[str, object]:
    result = chain.poll(repository_id, trigger=trigger, force=force, service_ids=service_ids)
    if result.error and result.transient and trigger != Deployment.Trigger.POLL:
        # A webhook or "sync now" deserves a retry; a scheduled poll simply waits for
        # the next tick (the repository's backoff already records the failure).
        raise self.retry(countdown=backoff(self.request.retries, result.retry_after))
    return {
        "commit": result.commit,
        "deployments": result.deployments,
        "error": result.error,
        "skipped": result.skipped,
    }


@shared_task(name="syncworker.fetch_services", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def fetch_services(self: Task, deployment_ids: list[int]) -> dict[str, object]:
    results = chain.fetch(deployment_ids)
    transient = [r for r in results if r.transient]
    if transient:
        # Only those retry; the rest of the batch is rendered or failed for good.
        hints = [r.retry_after for r in transient if r.retry_after is not None]
        _retry_transient(
            self,
            [r.deployment_id for r in transient],
            transient[0].error,
            max(hints) if hints else None,
        )
    return {
        "rendered": [r.deployment_id for r in results if r.rendered],
        "errors": {r.deployment_id: r.error for r in results if r.error},
    }


@shared_task(name="syncworker.fetch_service", acks_late=True)
def fetch_service(deployment_id: int) -> None:
    """The single-deployment message of earlier versions, still in a queue during an
    upgrade: handed on as a batch of one."""
    handoff.fetch([deployment_id])


@shared_task(name="syncworker.apply_deployment", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def apply_deployment(self: Task, deployment_id: int) -> dict[str, object]:
    result = chain.apply(deployment_id)
    # The drain stops at the first deployment of the cluster that met a transient error,
    # maybe not this task's own: that one is retried (the budget is this message's), and
    # its run drains the cluster on from there.
    if result.transient and self.request.retries >= MAX_RETRIES:
        chain.give_up_apply(result.deployment_id, f"gave up after retries: {result.error}")
    elif result.transient:
        _retry_transient(self, result.deployment_id, result.error, result.retry_after)
    return {"status": result.status, "error": result.error, "skipped": result.skipped}


def _retry_transient(
    task: Task, deployments: int | list[int], error: str, retry_after: float | None
) -> None:
    """Retry a transient failure of ``deployments`` (the task's argument) with backoff;
    those that outlived their retries fail."""
    if task.request.retries >= MAX_RETRIES:
        for deployment_id in deployments if isinstance(deployments, list) else [deployments]:
            lifecycle.fail(
                deployment_id, Deployment.Reason.RETRIES, f"gave up after retries: {error}"
            )
        return
    raise task.retry(args=(deployments,), countdown=backoff(task.request.retries, retry_after))


@shared_task(name="syncworker.check_health", acks_late=True)
def check_health(deployment_id: int) -> dict[str, object]:
    result = chain.check_health(deployment_id)
    return {"status": result.status, "health": result.health, "skipped": result.skipped}


@shared_task(name="syncworker.notify_deployment", acks_late=True)
def notify_deployment(deployment_id: int) -> int:
    return chain.send_notifications(deployment_id)


@shared_task(name="syncworker.check_drift", acks_late=True)
def check_drift(service_id: int) -> dict[str, object]:
    # No retry: the next scheduled check comes within one drift interval anyway.
    result = chain.check_drift(service_id)
    return {
        "drift": result.drift,
        "error": result.error,
        "skipped": result.skipped,
        "self_heal": result.healed,
    }


@shared_task(name="syncworker.requeue_stuck", acks_late=True)
def requeue_stuck() -> list[int]:
    return recovery.requeue_stuck()
