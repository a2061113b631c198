"""A service's current health and sync status: written here only.

The health wait after an apply and the drift check both record through
``record_service_status``, so the two never disagree on how the fields are written; what
sync status a service has is decided by ``sync_verdict`` alone, for both, and a failed
deployment's mark (``failed_verdict``) is the one ``lifecycle.fail`` writes.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from syncworker.models import Deployment, Service

SyncStatus = Service.SyncStatus
# Messages explain a state; a new message alone is not a change of state.
MESSAGES = ("health_message", "sync_message")


def sync_verdict(
    restored_trigger: str,
    *,
    drifted: bool,
    commit: str,
    git_head: str,
    failed: Deployment | None = None,
) -> tuple[str, str]:
    """The sync status (and its message) of a service whose newest successful deployment
    has ``restored_trigger`` (a self-heal looked through: see ``restored_trigger``) and
    applied ``commit``; ``drifted``: the live objects differ from that deployment;
    ``failed``: a deployment that failed after it (``failed_since``).

    "Synced" means as Git says, as in Argo CD: a rollback's bundle is not, so the service
    stays out-of-sync, with or without drift, until a deployment from Git succeeds again;
    nor is the bundle before a failed one, so the service stays failed until one succeeds.
    """
    if failed is not None:
        return failed_verdict(failed.pk, failed.reason)
    if restored_trigger == Deployment.Trigger.ROLLBACK:
        head = f", Git is at {git_head[:12]}" if git_head else ""
        return SyncStatus.OUT_OF_SYNC, f"rolled back to {commit[:12]}{head}"
    return (SyncStatus.OUT_OF_SYNC if drifted else SyncStatus.SYNCED), ""


# A deployment that failed for these reasons did apply its bundle: its service is as Git
# says (a failed health wait: synced and degraded, as in Argo CD). Any other failure
# leaves the service failed.
APPLIED_YET_FAILED = (Deployment.Reason.HEALTH,)


def fails_sync(reason: str) -> bool:
    return reason not in APPLIED_YET_FAILED


def failed_verdict(deployment_id: int, reason: str) -> tuple[str, str]:
    """The sync status and message of a service whose deployment ``deployment_id`` failed
    for ``reason``, a reason that ``fails_sync``."""
    label = Deployment.Reason(reason).label.lower()
    return SyncStatus.FAILED, f"deployment {deployment_id} failed: {label}"


def failed_since(last: Deployment) -> Deployment | None:
    """The newest deployment of ``last``'s service that failed (for a reason that
    ``fails_sync``) after ``last``, its newest success on that cluster, finished; one not
    yet on a cluster (it failed to fetch or render) counts too. One query."""
    failed = Deployment.objects.filter(
        Q(cluster_id=last.cluster_id) | Q(cluster__isnull=True),
        service_id=last.service_id,
        status=Deployment.Status.FAILED,
        finished_at__gt=last.finished_at,
    ).exclude(reason__in=APPLIED_YET_FAILED)
    return failed.only("pk", "reason").order_by("-finished_at", "-pk").first()


def restored_trigger(deployment: Deployment) -> str:
    """What put the bundle of ``deployment`` on the cluster: its own trigger, or for a
    self-heal (which re-applies the newest successful deployment) the trigger of the
    newest successful deployment that is not one, so that a self-heal of a rollback is
    still a rollback. One query, for a self-heal only."""
    if deployment.trigger != Deployment.Trigger.SELF_HEAL:
        return deployment.trigger
    origins = Deployment.objects.filter(
        service_id=deployment.service_id, status=Deployment.Status.SUCCEEDED
    ).exclude(trigger=Deployment.Trigger.SELF_HEAL)
    if deployment.cluster_id is not None:
        origins = origins.filter(cluster_id=deployment.cluster_id)
    origin = origins.order_by("-finished_at", "-pk").values_list("trigger", flat=True).first()
    return origin or Deployment.Trigger.POLL


def record_service_status(
    service_id: int,
    *,
    health: str | None = None,
    message: str | None = None,
    sync_status: str | None = None,
    sync_message: str = "",
) -> bool:
    """Set what is given (``None`` leaves a field as it is; a sync status replaces its
    message too); answers whether a value changed, so a caller can notify once per change
    of state."""
    fields: dict[str, str] = {}
    if health is not None:
        fields["health"] = Service.Health(health).value
    if message is not None:
        fields["health_message"] = message[:10_000]
    if sync_status is not None:
        fields["sync_status"] = Service.SyncStatus(sync_status).value
        fields["sync_message"] = sync_message[:10_000]
    if not fields:
        return False
    current = Service.objects.filter(pk=service_id).values(*fields).first()
    if current is None:
        return False
    changed = any(current[k] != v for k, v in fields.items() if k not in MESSAGES)
    if changed:
        fields["status_changed_at"] = timezone.now()  # type: ignore[assignment]
    Service.objects.filter(pk=service_id).update(**fields)
    return changed


def status_fields(
    *,
    health: str | None = None,
    message: str | None = None,
    sync_status: str | None = None,
    sync_message: str = "",
) -> dict[str, Any]:
    """The same change as ``record_service_status`` as keyword arguments of one
    ``Service.objects.filter(...).update()``, to join with other fields of the row:
    ``status_changed_at`` moves only when a state differs, decided by the UPDATE itself."""
    fields: dict[str, Any] = {}
    differs: list[Q] = []
    if health is not None:
        fields["health"] = Service.Health(health).value
        differs.append(~Q(health=fields["health"]))
    if message is not None:
        fields["health_message"] = message[:10_000]
    if sync_status is not None:
        fields["sync_status"] = Service.SyncStatus(sync_status).value
        fields["sync_message"] = sync_message[:10_000]
        differs.append(~Q(sync_status=fields["sync_status"]))
    if differs:
        fields["status_changed_at"] = Case(
            When(reduce(operator.or_, differs), then=Value(timezone.now())),
            default=F("status_changed_at"),
        )
    return fields
