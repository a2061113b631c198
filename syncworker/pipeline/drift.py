"""The drift check of one service: are the live objects still what the last successful
deployment applied, and is that what Git says (``status.sync_verdict``: not after a
rollback, nor when a later deployment failed)?

The check is the diff of that bundle against the cluster (a GET and a dry-run apply per
object, see :mod:`syncworker.pipeline.diffing`): an object is drifted when the apply would
change a field we own, or when it is missing. The result is stored on the service
(``drift``, ``sync_status``), notified when the state changes, and, with ``self_heal``,
answered by re-applying that bundle as a new deployment, at most once per drift interval.
The health of the objects read is recorded too, so a Deployment that degrades or an
object deleted by hand shows between deployments. An unreachable cluster says nothing
about drift: health becomes ``unknown``, the last verdict stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from syncworker.applyers.kubediff import CREATED, UNCHANGED
from syncworker.health import Health, summarize
from syncworker.models import Deployment, Service
from syncworker.pipeline import actions, diffing
from syncworker.pipeline.notify import notify_drift
from syncworker.pipeline.status import (
    failed_since,
    record_service_status,
    restored_trigger,
    sync_verdict,
)

log = logging.getLogger(__name__)
MISSING, CHANGED = "missing", "changed"
IN_FLIGHT = (Deployment.Status.QUEUED, Deployment.Status.APPLYING)


@dataclass
class DriftResult:
    service_id: int
    skipped: str = ""
    error: str = ""
    drift: list[dict[str, Any]] = field(default_factory=list)
    notified: bool = False
    healed: int | None = None  # the self-heal deployment


def check_drift(service_id: int) -> DriftResult:
    result = DriftResult(service_id)
    service = Service.objects.select_related("repository", "cluster").filter(pk=service_id).first()
    if service is None or not service.enabled:
        result.skipped = "service gone or disabled"
        return result
    if service.deployments.filter(status__in=IN_FLIGHT).exists():
        # Half-applied is not drift: the deployment's own outcome will tell.
        result.skipped = "a deployment is in flight"
        return result
    try:
        diff = diffing.diff_last_deployment(service)
    except diffing.DiffFailed as exc:
        result.error = str(exc)
        if exc.unreachable:
            record_service_status(service.pk, health=Service.Health.UNKNOWN)
        log.info("drift check of %s: %s", service.name, exc)
        return result
    result.drift = drifted(diff)
    was_drifted = bool(service.drift)
    Service.objects.filter(pk=service.pk).update(
        drift=result.drift, drift_checked_at=timezone.now()
    )
    assert diff.deployment is not None
    state, why = sync_verdict(
        restored_trigger(diff.deployment),
        drifted=bool(result.drift),
        commit=diff.commit,
        git_head=service.repository.last_seen_commit,
        failed=failed_since(diff.deployment),
    )
    health = live_health(diff)
    record_service_status(
        service.pk,
        health=health.status if health else None,
        message=health.message if health else None,
        sync_status=state,
        sync_message=why,
    )
    if was_drifted != bool(result.drift) or (
        result.drift and _names(result.drift) != _names(service.drift)
    ):
        notify_drift(service, result.drift, sync_status=state, sync_message=why)
        result.notified = True
    if result.drift and service.self_heal:
        result.healed = self_heal(service)
    return result


def drifted(diff: diffing.ServiceDiff) -> list[dict[str, Any]]:
    """The drift entries of a diff against the last deployment: one per object."""
    return [
        {
            "api_version": o.ref.api_version,
            "kind": o.ref.kind,
            "namespace": o.ref.namespace,
            "name": o.ref.name,
            "state": MISSING if o.action == CREATED else CHANGED,
            "fields": o.fields,
        }
        for o in diff.objects
        if o.action != UNCHANGED
    ]


def live_health(diff: diffing.ServiceDiff) -> Health | None:
    """The health of the objects the check read (a deleted one is missing), so that the
    service's health follows the cluster between deployments; None when none was read."""
    read = [(o.ref, o.health) for o in diff.objects if o.health is not None]
    return summarize(read) if read else None


def self_heal(service: Service) -> int | None:
    """Re-apply the last successful bundle as a ``self-heal`` deployment, unless one ran
    within the drift interval; the new deployment's id, or None."""
    with transaction.atomic():
        locked = Service.objects.select_for_update().get(pk=service.pk)
        now = timezone.now()
        recent = locked.last_self_heal_at
        if recent is not None and now - recent < timedelta(seconds=locked.drift_interval):
            return None
        cluster = diffing.cluster_of(locked)
        last = diffing.last_success(locked, cluster) if cluster else None
        if last is None:
            return None
        Service.objects.filter(pk=locked.pk).update(last_self_heal_at=now)
        return actions.rollback(last, trigger=Deployment.Trigger.SELF_HEAL).pk


def _names(drift: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["namespace"], d["name"]) for d in drift}
