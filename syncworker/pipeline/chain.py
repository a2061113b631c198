"""The chain of stages, read in one place:

    poll ──▶ fetch ──▶ apply ──▶ check_health (again until done) ──▶ notify
    polling  fetching  deploying  waiting                           notify
                         ▲            │ PreSync hooks succeeded
                         └────────────┘

    check_drift ──▶ (self_heal: apply)         drift, on its own schedule per service

A poll's changed services are fetched in batches (one task renders up to
``GITOPS_FETCH_BATCH``); a batch hands on one apply per cluster, as the task that takes a
cluster's lease applies every ready deployment of it, oldest first (``deploying``).

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
    """Has the branch moved, and which services changed? They get fetched, in batches."""
    result = polling.poll_repository(
        repository_id, trigger=trigger, force=force, service_ids=service_ids
    )
    handoff.fetch(result.deployments)
    return result


def fetch(deployment_ids: list[int]) -> list[fetching.FetchResult]:
    """Read, parse, validate and mutate each service at its commit; bundles get applied:
    one apply per cluster, whose task drains every ready deployment of it in order."""
    results = fetching.fetch_and_render_many(deployment_ids)
    first: dict[int, int] = {}
    for result in results:
        if result.rendered:
            first[result.cluster_key] = min(
                result.deployment_id, first.get(result.cluster_key, result.deployment_id)
            )
    for deployment_id in sorted(first.values()):
        handoff.apply(deployment_id)
    return results


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
