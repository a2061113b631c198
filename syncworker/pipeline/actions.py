"""Deliberate actions a person takes from the admin or the API: sync now, redeploy,
roll back. Each only queues work; the workers do it, in order, like any other change.

When the broker is down an action raises ``QueueUnavailable`` and leaves nothing behind:
the person is told it did not happen and can try again. A rollback's new row is removed
again rather than left for the recovery sweep, which would apply it minutes later, long
after the person was told it failed.
"""

from __future__ import annotations

import logging

from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import handoff
from syncworker.pipeline.handoff import QueueUnavailable

__all__ = ["ActionError", "QueueUnavailable", "redeploy", "rollback", "sync_now"]

log = logging.getLogger(__name__)


class ActionError(ValueError):
    """The action does not apply to this object (the message says why)."""


def sync_now(repository: Repository, *, trigger: str = Deployment.Trigger.MANUAL) -> None:
    """Poll the repository at once (what a webhook does too)."""
    if not repository.enabled:
        raise ActionError(f"repository {repository.key} is disabled")
    handoff.poll(repository.pk, trigger=trigger)


def redeploy(service: Service) -> None:
    """Deploy the service again at its branch head, even if nothing changed."""
    if not service.enabled or not service.repository.enabled:
        raise ActionError(f"service {service.name} or its repository is disabled")
    handoff.poll(
        service.repository_id,
        trigger=Deployment.Trigger.MANUAL,
        force=True,
        service_ids=[service.pk],
    )


def rollback(target: Deployment, *, trigger: str = Deployment.Trigger.ROLLBACK) -> Deployment:
    """Re-apply exactly the bundle of an earlier successful deployment. The next change in
    Git deploys again as usual: rolling back does not pause the service."""
    if target.status != Deployment.Status.SUCCEEDED or not target.bundle_digest:
        raise ActionError(f"deployment {target.pk} did not succeed; only those can be restored")
    deployment = Deployment.objects.create(
        service=target.service,
        cluster=target.cluster,
        commit_sha=target.commit_sha,
        tree_sha=target.tree_sha,
        settings_digest=target.settings_digest,
        trigger=trigger,
        rollback_of=target,
        bundle=target.bundle,
        bundle_digest=target.bundle_digest,
        object_count=target.object_count,
        applied_objects=target.applied_objects,
    )
    try:
        # Sent once committed: at once from the admin and the API (no transaction is
        # open there), so a broker failure lands here. Inside a caller's transaction it
        # is sent at that commit, and a failure then leaves the row to the sweep.
        handoff.apply(deployment.pk)
    except QueueUnavailable:
        # No message carries this id, so no worker knows the row: remove it unless
        # something has started it after all.
        Deployment.objects.filter(
            pk=deployment.pk, status=Deployment.Status.QUEUED, started_at__isnull=True
        ).delete()
        log.warning("rollback to deployment %s not queued: broker unreachable", target.pk)
        raise
    return deployment
