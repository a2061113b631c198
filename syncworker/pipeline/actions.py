"""Deliberate actions a person takes from the admin or the API: sync now, redeploy,
roll back. Each only queues work; the workers do it, in order, like any other change."""

from __future__ import annotations

from django.db import transaction

from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import handoff


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


@transaction.atomic
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
        trigger=trigger,
        rollback_of=target,
        bundle=target.bundle,
        bundle_digest=target.bundle_digest,
        object_count=target.object_count,
        applied_objects=target.applied_objects,
    )
    handoff.apply(deployment.pk)
    return deployment
