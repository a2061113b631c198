"""The Deployment's lifecycle, in one place:

    queued ──▶ applying ──▶ succeeded | failed | superseded
       │          ├─▶ applying, waiting for PreSync hooks ──▶ applying (apply next) | failed
       │          └─▶ applying, waiting for health (and Sync hooks)
       │                 └─▶ applying, waiting for PostSync hooks ──▶ succeeded | failed
       └───────────────────▶ failed | superseded   (before touching a cluster)

Waiting for health or hooks keeps the status ``applying`` (to API readers the deployment
is still in flight) and sets ``health_deadline``: the apply queue and the recovery sweep
leave it alone, and the ``health`` queue decides its end. ``hook_phase`` says which wait.

Every transition is a conditional update on the row's current state, so two workers
(a redelivered task, the sweep, a second apply worker) can never both make it; each
function answers whether it did. Reaching a final state records metrics and hands the
notification on, once committed. Callers never write ``status=`` themselves, and every
failure carries a ``Deployment.Reason`` beside its free-text error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Coalesce
from django.utils import timezone

from syncworker.kube.hooks import POST_SYNC, PRE_SYNC, SYNC
from syncworker.kube.refs import ObjectRef
from syncworker.models import Cluster, Deployment, NotificationTarget, Service
from syncworker.pipeline import handoff, metrics
from syncworker.pipeline.inventory import refs_to_json
from syncworker.pipeline.status import failed_verdict, fails_sync, status_fields

Status = Deployment.Status
Reason = Deployment.Reason
ACTIVE = (Status.QUEUED, Status.APPLYING)
MAX_ERROR = 20_000
MAX_OUTPUT = 100_000


@dataclass(frozen=True)
class Known:
    """What a caller already read about a deployment it ends, so that the end needs no
    second read: when it started, its repository's key, and whether any notification
    target was enabled (no target, no notification task)."""

    started_at: datetime | None
    repository: str
    notify: bool


def any_target() -> Exists:
    """An annotation: is any notification target enabled?"""
    return Exists(NotificationTarget.objects.filter(enabled=True))


def store_bundle(
    deployment_id: int,
    *,
    bundle: str,
    digest: str,
    refs: Sequence[ObjectRef],
    warnings: Sequence[str] = (),
    paths_read: Sequence[str] | None = None,
    tree_sha: str = "",
) -> bool:
    """A queued deployment gets its rendered bundle (it stays queued, for the apply);
    ``paths_read`` and ``tree_sha``, when given, are what its build read and their key
    (``pipeline.changes``)."""
    fields: dict[str, Any] = {}
    if paths_read is not None:
        fields["paths_read"] = list(paths_read)
    if tree_sha:
        fields["tree_sha"] = tree_sha
    return bool(
        Deployment.objects.filter(pk=deployment_id, status=Status.QUEUED, bundle_digest="").update(
            bundle=bundle,
            bundle_digest=digest,
            object_count=len(refs),
            applied_objects=refs_to_json(refs),
            warnings=list(warnings),
            **fields,
        )
    )


def start_applying(deployment_id: int, cluster: Cluster, *, now: datetime | None = None) -> bool:
    """queued (or applying, after a crashed worker) -> applying on ``cluster``, when it is
    rendered, not waiting for health, and no newer deployment of its service (one that
    has not failed or been superseded) overtook it: all checked by the one update."""
    newer = Deployment.objects.filter(service_id=OuterRef("service_id"), pk__gt=OuterRef("pk"))
    newer = newer.exclude(status__in=[Status.FAILED, Status.SUPERSEDED])
    return bool(
        Deployment.objects.filter(pk=deployment_id, status__in=ACTIVE, health_deadline=None)
        .exclude(bundle_digest="")
        .exclude(Exists(newer))
        .update(
            status=Status.APPLYING,
            cluster=cluster,
            started_at=Coalesce("started_at", now or timezone.now()),
        )
    )


def back_to_queue(deployment_id: int, error: str) -> bool:
    """applying -> queued after a transient error: the retry enters through the same
    guards as the first attempt."""
    return bool(
        Deployment.objects.filter(pk=deployment_id, status=Status.APPLYING).update(
            status=Status.QUEUED, error=error[:MAX_ERROR]
        )
    )


def await_health(
    deployment_id: int,
    *,
    deadline: Any,
    output: str = "",
    pruned: Sequence[ObjectRef] = (),
    hooks: list[dict[str, Any]] | None = None,
) -> bool:
    """applying -> applying, waiting for its objects (and its Sync hooks, ``hooks``) to
    be healthy until ``deadline``."""
    fields: dict[str, Any] = {"health_deadline": deadline, "output": output[-MAX_OUTPUT:]}
    if pruned:
        fields["pruned_objects"] = refs_to_json(pruned)
    if hooks is not None:
        fields["hooks"], fields["hook_phase"] = hooks, SYNC
    return bool(
        Deployment.objects.filter(
            pk=deployment_id, status=Status.APPLYING, health_deadline=None
        ).update(**fields)
    )


def await_pre_sync(deployment_id: int, *, deadline: Any, hooks: list[dict[str, Any]]) -> bool:
    """applying -> applying, waiting for its PreSync hooks (created, nothing else
    applied) until ``deadline``, off the apply queue."""
    return bool(
        Deployment.objects.filter(
            pk=deployment_id, status=Status.APPLYING, health_deadline=None, hook_phase=""
        ).update(health_deadline=deadline, hook_phase=PRE_SYNC, hooks=hooks)
    )


def pre_sync_done(deployment_id: int, *, hooks: list[dict[str, Any]]) -> bool:
    """PreSync hooks succeeded -> applying, for the apply queue to apply the objects (the
    sweep re-sends the apply should its message be lost, as for any applying row)."""
    return bool(
        Deployment.objects.filter(
            pk=deployment_id, status=Status.APPLYING, hook_phase=PRE_SYNC
        ).update(health_deadline=None, hook_phase=SYNC, hooks=hooks)
    )


def await_post_sync(
    deployment_id: int, *, deadline: Any, hooks: list[dict[str, Any]], output: str
) -> bool:
    """Healthy, Sync hooks done -> applying, waiting for its PostSync hooks."""
    return bool(
        Deployment.objects.filter(pk=deployment_id, status=Status.APPLYING, hook_phase=SYNC)
        .exclude(health_deadline=None)
        .update(
            health_deadline=deadline, hook_phase=POST_SYNC, hooks=hooks, output=output[-MAX_OUTPUT:]
        )
    )


def record_hooks(deployment_id: int, hooks: list[dict[str, Any]]) -> bool:
    """What the hooks of an active deployment did so far."""
    return bool(Deployment.objects.filter(pk=deployment_id, status__in=ACTIVE).update(hooks=hooks))


def succeed(
    deployment_id: int,
    *,
    output: str = "",
    pruned: Sequence[ObjectRef] = (),
    known: Known | None = None,
    **fields: Any,
) -> bool:
    """applying -> succeeded."""
    return _finish(
        deployment_id,
        Status.SUCCEEDED,
        Reason.NONE,
        from_states=(Status.APPLYING,),
        output=output,
        pruned=pruned,
        known=known,
        error="",
        **fields,
    )


def fail(
    deployment_id: int,
    reason: Reason,
    error: str,
    *,
    output: str = "",
    pruned: Sequence[ObjectRef] = (),
    known: Known | None = None,
    **fields: Any,
) -> bool:
    """queued or applying -> failed, for ``reason``; unless the bundle was applied
    (``fails_sync``), its service is marked failed first, so whoever sees the deployment
    failed sees that too."""
    if fails_sync(reason):
        verdict, why = failed_verdict(deployment_id, reason)
        Service.objects.filter(
            deployments__pk=deployment_id, deployments__status__in=ACTIVE
        ).update(**status_fields(sync_status=verdict, sync_message=why))
    return _finish(
        deployment_id,
        Status.FAILED,
        reason,
        from_states=ACTIVE,
        output=output,
        pruned=pruned,
        known=known,
        error=error.strip()[:MAX_ERROR] or f"failed ({reason.label.lower()})",
        **fields,
    )


def supersede(deployment_id: int) -> bool:
    """queued or applying -> superseded: a newer deployment of the service overtook it
    before it touched the cluster, or while it waited for health."""
    return _finish(deployment_id, Status.SUPERSEDED, Reason.SUPERSEDED, from_states=ACTIVE)


def _finish(
    deployment_id: int,
    status: Status,
    reason: Reason,
    *,
    from_states: Sequence[Status],
    output: str | None = None,
    pruned: Sequence[ObjectRef] = (),
    known: Known | None = None,
    **fields: Any,
) -> bool:
    now = timezone.now()
    if output is not None:
        fields["output"] = output[-MAX_OUTPUT:]
    if pruned:
        fields["pruned_objects"] = refs_to_json(pruned)
    if status != Status.SUPERSEDED:  # a superseded deployment never started
        fields["started_at"] = Coalesce("started_at", now)
    done = Deployment.objects.filter(pk=deployment_id, status__in=from_states).update(
        status=status, reason=reason, finished_at=now, **fields
    )
    if done:
        transaction.on_commit(lambda: _finished(deployment_id, status, reason, now, known))
    return bool(done)


def _finished(
    deployment_id: int, status: Status, reason: Reason, finished_at: datetime, known: Known | None
) -> None:
    """After a final state is committed: metrics, then the notification (its own task,
    so a slow receiver never holds a worker of the pipeline) when a target is enabled."""
    if known is None:
        row = (
            Deployment.objects.filter(pk=deployment_id)
            .annotate(notify=any_target())
            .values("started_at", "service__repository__key", "notify")
            .first()
        )
        if row is None:
            return
        known = Known(row["started_at"], row["service__repository__key"], row["notify"])
    started = known.started_at
    metrics.record_deployment(
        status,
        reason=reason,
        seconds=(finished_at - started).total_seconds() if started else None,
        repository=known.repository,
    )
    if known.notify:
        handoff.notify(deployment_id)
