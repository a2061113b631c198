"""Apply deployments to each cluster in order, once; clusters in parallel.

Order, exactly: on one cluster, deployments are applied one at a time, in ascending
deployment id among those *ready* (rendered, ``queued`` — or ``applying`` with no health
wait, left so by a worker that died — and bound for that cluster). A deployment still
being fetched is not ready, so a later one of another service may pass it; within a
service only the newest matters (an older one still queued ends ``superseded``).
Different clusters have nothing in common and apply at once, on as many apply worker
processes and machines as there are.

The cluster's lease (``pipeline.lease``) makes this so. A task takes the lease of its
deployment's cluster and then *drains* the cluster: the oldest ready deployment, re-read
under the lease and guarded on its state, then the next, until none is left. A task
that finds the lease held returns at once, holding no worker slot: the holder reaches
its deployment. After letting go, the holder looks once more and takes the lease again
if something became ready meanwhile (its task found the lease still held), so nothing is
left behind; the recovery sweep stays the backstop for a holder that died. Guards: a
finished deployment is a no-op (a redelivered task applies nothing twice), one that a
newer one of its service overtook ends ``superseded`` without touching the cluster, and
one left ``applying`` by a crashed worker is applied again (server-side apply is
idempotent).

A transient error (429, a connection refused) stops the drain: the deployment goes back
to ``queued`` and is retried with backoff, and nothing behind it on that cluster passes
it. A drain hands the cluster on (one apply task) once it ran for half the task soft
time limit, so no task outlives its limits or the broker's visibility timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from syncworker.applyers import applyer_for
from syncworker.applyers.base import Applyer, ApplyReport, TransientApplyError
from syncworker.kube.hooks import POST_SYNC, PRE_SYNC, SYNC
from syncworker.kube.refs import ObjectRef
from syncworker.models import Cluster, Deployment, Service
from syncworker.pipeline import handoff, hooks, inventory, lifecycle
from syncworker.pipeline.lease import Lease, lease_key
from syncworker.pipeline.status import (
    restored_trigger,
    status_fields,
    sync_verdict,
)

log = logging.getLogger(__name__)
Status = Deployment.Status
Reason = Deployment.Reason
__all__ = ["ApplyResult", "apply_deployment", "give_up", "hand_on", "lease_key", "ready_on"]


@dataclass
class ApplyResult:
    #: The deployment this result is about: the task's own, or the one a transient
    #: error stopped the drain at (the one to retry).
    deployment_id: int
    status: str = ""
    skipped: str = ""
    error: str = ""
    transient: bool = False
    retry_after: float | None = None


def cluster_for(deployment: Deployment) -> Cluster | None:
    if deployment.cluster_id:
        return deployment.cluster
    if deployment.service.cluster_id:
        return deployment.service.cluster
    return Cluster.objects.filter(is_default=True).first()


def apply_deployment(deployment_id: int) -> ApplyResult:
    result = ApplyResult(deployment_id)
    deployment = _load(deployment_id)
    if deployment is None:
        result.skipped = "deployment no longer exists"
        return result
    if deployment.is_final:
        result.skipped, result.status = "already finished", deployment.status
        return result
    cluster = cluster_for(deployment)
    if cluster is None:
        lifecycle.fail(deployment.pk, Reason.CLUSTER, "no cluster: configure a default cluster")
        result.status = Status.FAILED
        return result
    lease = Lease(cluster.pk)
    if not lease.acquire():
        result.skipped = f"cluster {cluster.name} is busy: its lease holder applies this in turn"
        return result
    return _drain(cluster, lease, result)


def ready_on(cluster: Cluster) -> QuerySet[Deployment]:
    """The deployments ready to apply to ``cluster``, in the order they apply."""
    return _ready().filter(Q(cluster_id=cluster.pk) | _unbound(cluster)).order_by("pk")


def _ready() -> QuerySet[Deployment]:
    # Exactly the condition of the partial index deploy_ready, so that it serves these.
    return Deployment.objects.filter(status__in=lifecycle.ACTIVE, health_deadline=None).exclude(
        bundle_digest=""
    )


def _unbound(cluster: Cluster) -> Q:
    """Deployments that name no cluster and go to ``cluster``: their service's, or the
    default one when the service names none either."""
    unbound = Q(cluster=None, service__cluster_id=cluster.pk)
    if cluster.is_default:
        unbound |= Q(cluster=None, service__cluster=None)
    return unbound


def hand_on(cluster: Cluster) -> int | None:
    """Queue an apply for the cluster's oldest ready deployment (its task drains the
    rest); what a lease holder does when it stops before the cluster is drained."""
    # Through the index lookups of _first_ready, not ready_on()'s OR (a walk of the history).
    first = _first_ready(cluster, set()).values_list("pk", flat=True).first()
    if first is not None:
        handoff.apply(first)
    return first


def give_up(deployment_id: int, error: str) -> None:
    """Fail a deployment that outlived its retries (reason retries); the deployments
    queued behind it on its cluster get an apply of their own."""
    lifecycle.fail(deployment_id, Reason.RETRIES, error)
    deployment = _load(deployment_id)
    cluster = cluster_for(deployment) if deployment is not None else None
    if cluster is not None:
        hand_on(cluster)


def drain_seconds() -> float:
    return settings.CELERY_TASK_SOFT_TIME_LIMIT / 2


def _drain(cluster: Cluster, lease: Lease, own: ApplyResult) -> ApplyResult:
    """Apply the cluster's ready deployments oldest first while holding its lease."""
    until = time.monotonic() + drain_seconds()
    # Those met that may still look ready (not started, or waiting for their hooks) are
    # not taken again; one that ended is not ready any more, so the set stays small.
    passed: set[int] = set()
    reached = False
    while True:
        try:
            upcoming: list[Deployment] = []
            # A short read found all there was: the look after the lease is let go
            # (which must be made anyway) finds any that became ready since.
            more = True
            while time.monotonic() < until:
                if not upcoming and more:
                    upcoming = _upcoming(cluster, passed)
                    more = len(upcoming) == READ_AHEAD
                if not upcoming:
                    break
                deployment = upcoming.pop(0)
                result = _apply_locked(deployment, cluster, ApplyResult(deployment.pk))
                if result.status not in (Status.SUCCEEDED, Status.FAILED, Status.SUPERSEDED):
                    passed.add(deployment.pk)
                outcome = "transient error" if result.transient else result.status or "skipped"
                log.info("deployment %s on cluster %s: %s", deployment.pk, cluster.name, outcome)
                if deployment.pk == own.deployment_id:
                    own, reached = result, True
                if result.transient:
                    # Nothing behind it may pass it: the drain stops, and it is retried.
                    return result
        finally:
            lease.release()
        if not _any_ready(cluster, passed):
            return _unreached(own, reached, "not ready to apply (not rendered yet)")
        # Something became ready after our last look, or the time is up.
        if time.monotonic() >= until:
            hand_on(cluster)
            return _unreached(own, reached, "drain out of time: the cluster was handed on")
        if not lease.acquire():
            return _unreached(own, reached, "a new holder of the cluster applies this in turn")


def _unreached(own: ApplyResult, reached: bool, why: str) -> ApplyResult:
    if not reached:
        own.skipped = why
    return own


#: Deployments the drain reads at once (one statement for their rows, not one each).
READ_AHEAD = 8


def _upcoming(cluster: Cluster, passed: set[int]) -> list[Deployment]:
    """The oldest ``READ_AHEAD`` deployments of ``ready_on(cluster)`` but ``passed``,
    oldest first, read with what their applies need.

    Read ahead safely: each one is started through its guarded update, so one that moved
    on since (superseded, failed, applied) is not applied; one that became ready
    meanwhile waits for the next read, at most ``READ_AHEAD`` applies later. The ids come
    from the two index lookups of :func:`_ready_halves`, ``READ_AHEAD`` each."""
    bound, unbound = _ready_halves(cluster, passed)
    ids = [*bound.values_list("pk", flat=True)[:READ_AHEAD]]
    ids += unbound.values_list("pk", flat=True)[:READ_AHEAD]
    if not ids:
        return []
    return list(
        Deployment.objects.filter(pk__in=sorted(ids)[:READ_AHEAD])
        .select_related("service__repository", "service__cluster", "cluster")
        .annotate(notify=lifecycle.any_target())
        .order_by("pk")
    )


def _any_ready(cluster: Cluster, passed: set[int]) -> bool:
    """Whether ``ready_on(cluster)`` holds any deployment but ``passed``."""
    return _first_ready(cluster, passed).exists()


def _first_ready(cluster: Cluster, passed: set[int]) -> QuerySet[Deployment]:
    """The oldest deployment of ``ready_on(cluster)`` but ``passed`` (none when there is
    none), in one statement: the smaller id of the first of each of :func:`_ready_halves`."""
    bound, unbound = (Subquery(half.values("pk")[:1]) for half in _ready_halves(cluster, passed))
    # Both ways round: SQLite's MIN() of several answers NULL as soon as one is.
    return Deployment.objects.filter(pk=Least(Coalesce(bound, unbound), Coalesce(unbound, bound)))


def _ready_halves(
    cluster: Cluster, passed: set[int]
) -> tuple[QuerySet[Deployment], QuerySet[Deployment]]:
    """``ready_on(cluster)`` but ``passed`` as two lookups in the partial index
    deploy_ready, oldest first: the deployments bound for the cluster, and those naming
    no cluster that go there.

    Not ``ready_on()`` itself: no index has an OR across two tables in order, so
    PostgreSQL walks the primary key from the oldest deployment (or scans the table when
    it judges the ready ones dense), reading the history at every pick. Each half is
    ordered by (cluster, id), an order only deploy_ready has; the cluster as a range of
    one (not ``=``) keeps the planner from dropping it from the order as a constant and
    taking the primary key's order instead."""
    ready = _ready().exclude(pk__in=passed).order_by("cluster_id", "pk")
    bound = ready.filter(cluster_id__gte=cluster.pk, cluster_id__lte=cluster.pk)
    return bound, ready.filter(_unbound(cluster))


def _apply_locked(deployment: Deployment, cluster: Cluster, result: ApplyResult) -> ApplyResult:
    # The row was read before the lease; its guards are checked again by the update
    # that starts the apply, so a row that moved on meanwhile is never applied.
    started = timezone.now()
    if not lifecycle.start_applying(deployment.pk, cluster, now=started):
        return _not_started(deployment.pk, result)
    # bench/multi_worker.py times each attempt from this line to its outcome's.
    log.info("applying deployment %s to cluster %s", deployment.pk, cluster.name)
    if deployment.started_at is None:
        deployment.started_at = started
    try:
        return _apply_and_record(deployment, cluster, result)
    except Exception as exc:
        # Whatever broke (a database error, a bug), the row must not stay applying for
        # the sweep to replay for ever: it fails, and the trace goes to the log.
        log.exception("apply of deployment %s failed unexpectedly", deployment.pk)
        lifecycle.fail(deployment.pk, Reason.APPLY, f"internal error: {type(exc).__name__}: {exc}")
        result.status, result.error = Status.FAILED, str(exc)
        return result


def _not_started(deployment_id: int, result: ApplyResult) -> ApplyResult:
    """Why the guarded start did not happen (a rare path: it reads the row again)."""
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None or deployment.is_final:
        result.skipped = "finished while waiting for the cluster lock"
    elif deployment.health_deadline is not None:
        result.skipped = "applied, waiting for health"
    elif overtaken(deployment):
        lifecycle.supersede(deployment.pk)
        result.status = Status.SUPERSEDED
    else:
        result.skipped = "not rendered yet"
    return result


def _apply_and_record(deployment: Deployment, cluster: Cluster, result: ApplyResult) -> ApplyResult:
    service = deployment.service
    desired = inventory.refs_from_json(deployment.applied_objects)
    before = inventory.held(service, cluster, desired)
    known = _known(deployment)
    if before.taken:
        # Never take an object another service manages: fail before touching the cluster.
        taken = _taken_message(before.taken)
        lifecycle.fail(deployment.pk, Reason.CONFLICT, taken, known=known)
        result.status, result.error = Status.FAILED, taken
        return result
    reason = Reason.APPLY
    report: ApplyReport | None = None
    plan = hooks.plan_of(deployment.bundle)
    records = list(deployment.hooks)
    try:
        applyer = applyer_of(cluster)
        if plan.of(PRE_SYNC) and not deployment.hook_phase and applyer.can_run_hooks:
            # The whole bundle is validated and its missing namespaces created before the
            # hooks run in them; a bundle the dry run rejects runs no hook.
            report = applyer.prepare_bundle(plan.yaml, held=before.mine.keys())
            if report.ok:
                return _pre_sync(deployment, cluster, applyer, plan, report, result)
        else:
            report = applyer.apply_bundle(plan.yaml, held=before.mine.keys())
        ok, output = report.ok, report.output
        pruned: list[ObjectRef] = []
        stale = before.stale(desired) if ok else []
        if ok and stale and service.prune and applyer.can_prune:
            prune = applyer.prune(stale, service=service.name)
            output = f"{output}\n{prune.output}".strip()
            pruned, ok = prune.pruned, prune.ok
            reason = Reason.PRUNE
        if ok and plan.of(SYNC) and applyer.can_run_hooks:
            # After the last wave: Sync hooks are then waited on with the objects' health.
            try:
                records += hooks.start(applyer, deployment.pk, SYNC, plan.of(SYNC))
            except hooks.StartFailed as exc:
                records += exc.records
                ok, reason = False, Reason.HOOK
                output = f"Sync hook refused: {exc}\n{output}"
    except TransientApplyError as exc:
        # The retry may never come (a newer commit, the retry budget): what reached the
        # cluster is recorded now.
        reached = report.applied if report is not None else exc.applied
        with transaction.atomic():
            inventory.add(service, cluster, reached, deployment)
            lifecycle.back_to_queue(deployment.pk, str(exc))
        result.transient, result.error, result.retry_after = True, str(exc), exc.retry_after
        return result
    except InstallError as exc:
        ok, output, pruned, stale, reason = False, str(exc), [], [], Reason.INSTALL

    # Create-only objects (the service's namespace) are never ours to prune.
    never = set(report.create_only) if report is not None else set()
    finished_at = timezone.now()
    with transaction.atomic():
        if ok:
            kept = (set(desired) - never) | (set(stale) - set(pruned))
            inventory.replace(service, cluster, kept, deployment, before=before)
            _applied(
                deployment,
                applyer,
                plan,
                records,
                output=output,
                pruned=pruned,
                at=finished_at,
                known=known,
            )
        else:
            # Whatever reached the cluster is in the inventory, whatever the outcome.
            arrived = set(report.applied) - never if report is not None else set()
            inventory.add(service, cluster, arrived, deployment, removed=pruned)
            if reason != Reason.INSTALL:
                records = hooks.run_sync_fail(applyer, deployment.pk, plan, records)
            lifecycle.fail(
                deployment.pk,
                reason,
                _first_lines(output),
                output=_with_hooks(output, records),
                pruned=pruned,
                hooks=records,
                known=known,
            )
    result.status = Status.SUCCEEDED if ok else Status.FAILED
    return result


def _known(deployment: Deployment) -> lifecycle.Known:
    return lifecycle.Known(
        started_at=deployment.started_at,
        repository=deployment.service.repository.key,
        notify=getattr(deployment, "notify", True),
    )


def _applied(
    deployment: Deployment,
    applyer: Applyer,
    plan: hooks.Plan,
    records: list[dict[str, object]],
    *,
    output: str,
    pruned: list[ObjectRef],
    at: datetime,
    known: lifecycle.Known,
) -> None:
    """Everything reached the cluster: succeed now, or wait for health (and the Sync and
    PostSync hooks, which are always waited for) off this queue. The service's record
    (last applied, sync status, health) is one update."""
    service = deployment.service
    runs_hooks = applyer.can_run_hooks and bool(plan.of(SYNC) or plan.of(POST_SYNC))
    if plan.hooks and not applyer.can_run_hooks:
        output = f"{output}\nhooks not run: the {type(applyer).__name__} cannot create them"
    wait = service.wait and applyer.can_read
    health: dict[str, str] = {}
    if wait:
        health = {"health": Service.Health.PROGRESSING, "message": ""}
    elif not applyer.can_read:
        health = {"health": Service.Health.UNKNOWN, "message": "applyer cannot read objects"}
    sync, why = sync_verdict(
        restored_trigger(deployment),
        drifted=False,
        commit=deployment.commit_sha,
        git_head=service.repository.last_seen_commit,
    )
    Service.objects.filter(pk=service.pk).update(
        last_applied_commit=deployment.commit_sha,
        last_applied_tree=deployment.tree_sha,
        last_applied_at=at,
        **status_fields(sync_status=sync, sync_message=why, **health),
    )
    if not wait and not runs_hooks:
        lifecycle.succeed(
            deployment.pk,
            output=_with_hooks(output, records),
            pruned=pruned,
            hooks=records,
            known=known,
        )
        return
    deadline = timezone.now() + timedelta(seconds=service.health_timeout)
    lifecycle.await_health(
        deployment.pk, deadline=deadline, output=output, pruned=pruned, hooks=records
    )
    handoff.check_health(deployment.pk)


def _pre_sync(
    deployment: Deployment,
    cluster: Cluster,
    applyer: Applyer,
    plan: hooks.Plan,
    prepared: ApplyReport,
    result: ApplyResult,
) -> ApplyResult:
    """Create the PreSync hooks and wait for them off this queue (``waiting``); the
    objects are applied once they all succeeded, by this task sent again. ``prepared``:
    the bundle passed its dry run and its missing namespaces were created."""
    # A namespace of the bundle created for the hooks is the service's from now on,
    # whatever the hooks do (the service's own create-only one never is).
    arrived = set(prepared.applied) - set(prepared.create_only)
    inventory.add(deployment.service, cluster, arrived, deployment)
    try:
        records = hooks.start(applyer, deployment.pk, PRE_SYNC, plan.of(PRE_SYNC))
    except hooks.StartFailed as exc:
        records = hooks.run_sync_fail(applyer, deployment.pk, plan, exc.records)
        error = f"PreSync hook refused, nothing applied: {exc}"
        lifecycle.fail(
            deployment.pk, Reason.HOOK, error, output=_with_hooks(error, records), hooks=records
        )
        result.status, result.error = Status.FAILED, error
        return result
    deadline = timezone.now() + timedelta(seconds=deployment.service.health_timeout)
    lifecycle.await_pre_sync(deployment.pk, deadline=deadline, hooks=records)
    handoff.check_health(deployment.pk)
    result.status = Status.APPLYING
    return result


def _with_hooks(output: str, records: list[dict[str, object]]) -> str:
    return f"{output}\n{hooks.report(records)}".strip() if records else output


def _taken_message(taken: dict[ObjectRef, str]) -> str:
    return "\n".join(
        f"{ref} is owned by service {owner}; remove it from one of the two services"
        for ref, owner in sorted(taken.items())
    )


def overtaken(deployment: Deployment) -> bool:
    """A newer deployment of the service exists that has not failed or been superseded."""
    return (
        Deployment.objects.filter(service_id=deployment.service_id, pk__gt=deployment.pk)
        .exclude(status__in=[Status.FAILED, Status.SUPERSEDED])
        .exists()
    )


def _load(deployment_id: int) -> Deployment | None:
    """The deployment with its service, repository and clusters, read once per apply."""
    return (
        Deployment.objects.select_related("service__repository", "service__cluster", "cluster")
        .annotate(notify=lifecycle.any_target())
        .filter(pk=deployment_id)
        .first()
    )


def _first_lines(text: str, limit: int = 2000) -> str:
    return text.strip()[:limit] or "apply failed without output"


class InstallError(Exception):
    pass


# One applyer per cluster and process: install() runs once, as the seed says, and again
# only when the cluster's settings change.
_applyers: dict[int, tuple[object, Applyer]] = {}
_applyers_lock = threading.Lock()


def applyer_of(cluster: Cluster) -> Applyer:
    with _applyers_lock:
        cached = _applyers.get(cluster.pk)
        if cached and cached[0] == cluster.updated_at:
            return cached[1]
        try:
            applyer = applyer_for(cluster)
        except ValueError as exc:  # a bad setting of the cluster, named in the message
            raise InstallError(str(exc)) from None
        ok, message = applyer.install()
        if not ok:
            raise InstallError(f"applyer {cluster.applyer} of cluster {cluster.name}: {message}")
        log.info("applyer for cluster %s ready: %s", cluster.name, message)
        _applyers[cluster.pk] = (cluster.updated_at, applyer)
        return applyer
