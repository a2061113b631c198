"""The health and hook waits, one check per task run, off the apply queue.

An applied deployment with ``wait`` on stays ``applying`` with a ``health_deadline``; each
run of ``check_health`` reads its objects back, assesses them (``syncworker.health``),
records the service's health, and either ends the deployment (succeeded when all are
healthy; failed, reason health, naming each unhealthy object, once the deadline passed;
superseded when a newer deployment of the service exists) or asks to be run again. No
cluster lease is held, so other deployments to the cluster apply meanwhile.

Hooks wait the same way (``hook_phase``): PreSync hooks until all succeeded (then the
apply task is sent again to apply the objects) or one failed (the deployment fails with
nothing else applied); the Sync hooks with the objects' health; the PostSync hooks once
that is all done. A failed hook fails the deployment at once, reason hook, naming it and
why, and the SyncFail hooks run; so they do when the health wait fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import KubeConfigError
from syncworker.applyers.kuberead import ReadError
from syncworker.health import HEALTHY, UNKNOWN, Health, assess, summarize
from syncworker.kube.hooks import POST_SYNC, PRE_SYNC, SYNC
from syncworker.kube.refs import ObjectRef
from syncworker.models import Deployment
from syncworker.pipeline import deploying, hooks, inventory, lifecycle
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
    #: The PreSync hooks succeeded: the objects are to be applied next.
    apply_next: bool = False


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
    if deployment.hook_phase in (PRE_SYNC, POST_SYNC):
        return _check_hooks(deployment, deployment.hook_phase, result)
    # With ``wait: false`` only the hooks are waited for.
    refs = inventory.refs_from_json(deployment.applied_objects) if deployment.service.wait else []
    records = deployment.hooks
    applyer: deploying.Applyer | None = None
    try:
        applyer = deploying.applyer_of(deployment.cluster)
        health = assess_live(applyer, refs)
        records = hooks.observe(applyer, records)
    except (TransientApplyError, KubeConfigError, ReadError, deploying.InstallError) as exc:
        # An unreachable cluster says nothing about the objects: unknown, and try again.
        log.warning("health of deployment %s not read: %s", deployment.pk, exc)
        health = Health(UNKNOWN, f"could not read the objects: {exc}")
    result.health, result.message = health.status, health.message
    if deployment.service.wait:  # else only hooks were looked at: no health to tell
        record_service_status(deployment.service_id, health=health.status, message=health.message)
    output = _with_health(deployment.output, health)
    sync_hooks = hooks.state(records, SYNC)
    if sync_hooks == hooks.FAILED:
        _hook_failed(deployment, applyer, SYNC, records, output, result)
    elif health.status == HEALTHY and sync_hooks == hooks.SUCCEEDED and applyer is not None:
        records = hooks.clean_up(applyer, records)
        _healthy(deployment, applyer, records, output, result)
    elif timezone.now() >= deployment.health_deadline:
        timeout = deployment.service.health_timeout
        if health.status == HEALTHY:  # only Sync hooks still running
            _hook_failed(deployment, applyer, SYNC, records, output, result)
            return result
        records = _sync_fail(applyer, deployment, records)
        lifecycle.fail(
            deployment.pk,
            Deployment.Reason.HEALTH,
            f"not healthy within {timeout}s:\n{health.message}",
            output=_with_hooks(output, records),
            hooks=records,
        )
        result.status = Status.FAILED
    else:
        lifecycle.record_hooks(deployment.pk, records)
        result.again_in = float(settings.GITOPS["HEALTH_INTERVAL"])
    return result


def _healthy(
    deployment: Deployment,
    applyer: deploying.Applyer,
    records: list[dict[str, Any]],
    output: str,
    result: HealthResult,
) -> None:
    """Objects healthy, Sync hooks done: the PostSync hooks, or success."""
    post_sync = hooks.plan_of(deployment.bundle).of(POST_SYNC)
    if not (post_sync and applyer.can_run_hooks):
        lifecycle.succeed(deployment.pk, output=_with_hooks(output, records), hooks=records)
        result.status = Status.SUCCEEDED
        return
    try:
        records = records + hooks.start(applyer, deployment.pk, POST_SYNC, post_sync)
    except hooks.StartFailed as exc:
        records = records + exc.records
        output = f"{output}\nPostSync hook refused: {exc}"
        _hook_failed(deployment, applyer, POST_SYNC, records, output, result, str(exc))
        return
    except TransientApplyError as exc:  # created on the next check (or found again)
        log.warning("PostSync hooks of deployment %s not created: %s", deployment.pk, exc)
        result.again_in = float(settings.GITOPS["HEALTH_INTERVAL"])
        return
    deadline = timezone.now() + timedelta(seconds=deployment.service.health_timeout)
    lifecycle.await_post_sync(deployment.pk, deadline=deadline, hooks=records, output=output)
    result.again_in = float(settings.GITOPS["HEALTH_INTERVAL"])


def _check_hooks(deployment: Deployment, phase: str, result: HealthResult) -> HealthResult:
    """One look at the PreSync or PostSync hooks."""
    assert deployment.cluster is not None and deployment.health_deadline is not None
    try:
        applyer = deploying.applyer_of(deployment.cluster)
        records = hooks.observe(applyer, deployment.hooks)
    except (TransientApplyError, KubeConfigError, ReadError, deploying.InstallError) as exc:
        log.warning("%s hooks of deployment %s not read: %s", phase, deployment.pk, exc)
        if timezone.now() < deployment.health_deadline:
            result.again_in = float(settings.GITOPS["HEALTH_INTERVAL"])
            return result
        lifecycle.fail(deployment.pk, Deployment.Reason.HOOK, f"{phase} hooks not readable: {exc}")
        result.status = Status.FAILED
        return result
    done = hooks.state(records, phase)
    if done == hooks.SUCCEEDED:
        records = hooks.clean_up(applyer, records)
        if phase == PRE_SYNC:
            lifecycle.pre_sync_done(deployment.pk, hooks=records)
            result.status, result.apply_next = Status.APPLYING, True
        else:
            output = _with_hooks(deployment.output, records)
            lifecycle.succeed(deployment.pk, output=output, hooks=records)
            result.status = Status.SUCCEEDED
    elif done == hooks.FAILED or timezone.now() >= deployment.health_deadline:
        _hook_failed(deployment, applyer, phase, records, deployment.output, result)
    else:
        lifecycle.record_hooks(deployment.pk, records)
        result.again_in = float(settings.GITOPS["HEALTH_INTERVAL"])
    return result


def _hook_failed(
    deployment: Deployment,
    applyer: deploying.Applyer | None,
    phase: str,
    records: list[dict[str, Any]],
    output: str,
    result: HealthResult,
    why: str = "",
) -> None:
    """A hook of ``phase`` failed (or is not done by the deadline): the sync fails."""
    timeout = deployment.service.health_timeout
    failed = hooks.state(records, phase) == hooks.FAILED
    what = "failed" if failed or why else f"not complete within {timeout}s"
    nothing = ", nothing else applied" if phase == PRE_SYNC else ""
    error = f"{phase} hook {what}{nothing}:\n{why or hooks.failures(records, phase)}"
    if applyer is not None:
        records = hooks.clean_up(applyer, records)
    records = _sync_fail(applyer, deployment, records)
    lifecycle.fail(
        deployment.pk,
        Deployment.Reason.HOOK,
        error,
        output=_with_hooks(output, records),
        hooks=records,
    )
    result.status = Status.FAILED


def _sync_fail(
    applyer: deploying.Applyer | None, deployment: Deployment, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if applyer is None:  # the cluster cannot be reached: nothing can run there
        return records
    return hooks.run_sync_fail(applyer, deployment.pk, hooks.plan_of(deployment.bundle), records)


def _with_hooks(output: str, records: list[dict[str, Any]]) -> str:
    return f"{output}\n{hooks.report(records)}".strip() if records else output


def _with_health(output: str, health: Health) -> str:
    return f"{output}\nhealth: {health.status}\n{health.message}".strip()
