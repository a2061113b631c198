"""The health wait after an apply, one check per task run, off the apply queue.

An applied deployment with ``wait`` on stays ``applying`` with a ``health_deadline``; each
run of ``check_health`` reads its objects back, assesses them (``syncworker.health``),
records the service's health, and either ends the deployment (succeeded when all are
healthy; failed, reason health, naming each unhealthy object, once the deadline passed;
superseded when a newer deployment of the service exists) or asks to be run again. No
cluster lease is held, so other deployments to the cluster apply meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import KubeConfigError
from syncworker.applyers.kuberead import ReadError
from syncworker.health import HEALTHY, UNKNOWN, Health, assess, summarize
from syncworker.kube.refs import ObjectRef
from syncworker.models import Deployment
from syncworker.pipeline import deploying, inventory, lifecycle
from syncworker.pipeline.status import record_service_status

log = logging.getLogger(__name__)
Status = Deployment.Status


@dataclass
class HealthResult:
    deployment_id: int
    status: str = ""
    health: str = ""
    message: str = ""
    skipped: str = ""
    #: Seconds until the next check; ``None`` when the wait is over.
    again_in: float | None = None


def assess_live(applyer: deploying.Applyer, refs: list[ObjectRef]) -> Health:
    """The health of ``refs`` on the cluster, as one summary."""
    if not applyer.can_read:
        return Health(UNKNOWN, f"the {type(applyer).__name__} cannot read objects back")
    live = applyer.read(refs)
    return summarize((ref, assess(live.get(ref))) for ref in refs)


def check_health(deployment_id: int) -> HealthResult:
    result = HealthResult(deployment_id)
    deployment = (
        Deployment.objects.select_related("service", "cluster").filter(pk=deployment_id).first()
    )
    if deployment is None or deployment.status != Status.APPLYING:
        result.skipped = "not waiting for health"
        return result
    if deployment.health_deadline is None or deployment.cluster is None:
        result.skipped = "not applied yet"
        return result
    if deploying.overtaken(deployment):
        lifecycle.supersede(deployment.pk)
        result.status = Status.SUPERSEDED
        return result
    refs = inventory.refs_from_json(deployment.applied_objects)
    try:
        health = assess_live(deploying.applyer_of(deployment.cluster), refs)
    except (TransientApplyError, KubeConfigError, ReadError, deploying.InstallError) as exc:
        # An unreachable cluster says nothing about the objects: unknown, and try again.
        log.warning("health of deployment %s not read: %s", deployment.pk, exc)
        health = Health(UNKNOWN, f"could not read the objects: {exc}")
    result.health, result.message = health.status, health.message
    record_service_status(deployment.service_id, health=health.status, message=health.message)
    if health.status == HEALTHY:
        lifecycle.succeed(deployment.pk, output=_with_health(deployment.output, health))
        result.status = Status.SUCCEEDED
    elif timezone.now() >= deployment.health_deadline:
        timeout = deployment.service.health_timeout
        lifecycle.fail(
            deployment.pk,
            Deployment.Reason.HEALTH,
            f"not healthy within {timeout}s:\n{health.message}",
            output=_with_health(deployment.output, health),
        )
        result.status = Status.FAILED
    else:
        result.again_in = float(settings.GITOPS["HEALTH_INTERVAL"])
    return result


def _with_health(output: str, health: Health) -> str:
    return f"{output}\nhealth: {health.status}\n{health.message}".strip()
