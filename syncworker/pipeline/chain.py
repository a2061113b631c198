"""The chain of stages, read in one place:

    poll ──▶ fetch ──▶ apply ──▶ check_health (again until done) ──▶ notify
    polling  fetching  deploying  waiting                           notify
                         ▲            │ PreSync hooks succeeded
                         └────────────┘

    check_drift ──▶ (self_heal: apply)         drift, on its own schedule per service

Each stage is a plain function over ids: it re-reads its rows, guards on their state,
does its work and commits. What comes next is decided here and handed off by task name
(``handoff``), after commit; reaching a final state hands on the notification
(``lifecycle``). ``syncworker/tasks.py`` wraps these functions in Celery tasks with the
retry policy, and is the only module that knows Celery's task objects.
"""

from __future__ import annotations

from syncworker.pipeline import deploying, drift, fetching, handoff, notify, polling, waiting


def poll(
    repository_id: int, *, trigger: str, force: bool = False, service_ids: list[int] | None = None
) -> polling.PollResult:
    """Has the branch moved, and which services changed? Each gets a fetch."""
    result = polling.poll_repository(
        repository_id, trigger=trigger, force=force, service_ids=service_ids
    )
    for deployment_id in result.deployments:
        handoff.fetch(deployment_id)
    return result


def fetch(deployment_id: int) -> fetching.FetchResult:
    """Read, parse, validate and mutate the service at its commit; a bundle gets applied."""
    result = fetching.fetch_and_render(deployment_id)
    if result.rendered:
        handoff.apply(deployment_id)
    return result


def apply(deployment_id: int) -> deploying.ApplyResult:
    """Apply in order, once, then prune and record; the final state notifies."""
    return deploying.apply_deployment(deployment_id)


def give_up_apply(deployment_id: int, error: str) -> None:
    """A deployment that outlived its retries fails, and its cluster drains on."""
    deploying.give_up(deployment_id, error)


def check_health(deployment_id: int) -> waiting.HealthResult:
    """Are the applied objects healthy yet? Ends the deployment, or checks again later."""
    result = waiting.check_health(deployment_id)
    if result.again_in is not None:
        handoff.check_health(deployment_id, countdown=result.again_in)
    if result.apply_next:  # the PreSync hooks succeeded: now the objects
        handoff.apply(deployment_id)
    return result


def send_notifications(deployment_id: int) -> int:
    return notify.notify(deployment_id)


def check_drift(service_id: int) -> drift.DriftResult:
    """Compare the live objects with the last successful bundle; self-heal hands on an
    apply (through ``actions.rollback``)."""
    return drift.check_drift(service_id)
