"""Post deployment results and drift changes to the configured webhook URLs (the seed's
``webhook_url``).

The payload carries Slack's ``text`` field, so a Slack incoming webhook works as is, plus
structured fields for everything else. A notification failure is logged and never fails
the deployment. URLs can hold tokens (Slack's do), so logs name the host only.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from syncworker.models import Deployment, NotificationTarget, Service
from syncworker.rules import host_only

log = logging.getLogger(__name__)
TIMEOUT = 10


def payload(deployment: Deployment) -> dict[str, Any]:
    service = deployment.service
    text = (
        f"GitOps deployment {deployment.status}: {service.name} "
        f"@ {deployment.commit_sha[:12]} ({deployment.trigger})"
    )
    if deployment.reason and deployment.status == Deployment.Status.FAILED:
        text += f": {deployment.get_reason_display().lower()}"
    if deployment.error:
        text += f"\n{deployment.error[:500]}"
    return {
        "text": text,
        "deployment": deployment.pk,
        "service": service.name,
        "repository": service.repository.full_name,
        "status": deployment.status,
        "reason": deployment.reason,
        "trigger": deployment.trigger,
        "commit": deployment.commit_sha,
        "objects": deployment.object_count,
        "error": deployment.error,
        "health": service.health,
        "sync_status": service.sync_status,
    }


def notify(deployment_id: int) -> int:
    """Send the result of a finished deployment to every enabled target; return how many
    accepted it."""
    deployment = (
        Deployment.objects.select_related("service__repository").filter(pk=deployment_id).first()
    )
    if deployment is None or not deployment.is_final:
        return 0
    return _post(payload(deployment))


def drift_payload(
    service: Service, drift: list[dict[str, Any]], *, sync_status: str = "", sync_message: str = ""
) -> dict[str, Any]:
    """A service's drift changed: what is out of sync now (no values, only names), and the
    sync status the drift check gave it (``status.sync_verdict``: a rollback without drift
    is still out-of-sync)."""
    sync_status = sync_status or ("out-of-sync" if drift else "synced")
    if drift:
        names = ", ".join(f"{d['kind']} {d['namespace']}/{d['name']} {d['state']}" for d in drift)
        text = f"GitOps drift: {service.name} is out-of-sync: {names[:500]}"
    elif sync_status == "synced":
        text = f"GitOps drift: {service.name} is synced again"
    else:
        why = f": {sync_message}" if sync_message else ""
        text = f"GitOps drift: {service.name} has no drift again, still {sync_status}{why}"
    return {
        "text": text,
        "service": service.name,
        "repository": service.repository.full_name,
        "sync_status": sync_status,
        "sync_message": sync_message,
        "drift": drift,
    }


def notify_drift(
    service: Service, drift: list[dict[str, Any]], *, sync_status: str = "", sync_message: str = ""
) -> int:
    return _post(drift_payload(service, drift, sync_status=sync_status, sync_message=sync_message))


def _post(body: dict[str, Any]) -> int:
    delivered = 0
    for target in NotificationTarget.objects.filter(enabled=True):
        host = host_only(target.url)
        try:
            response = requests.post(target.url, json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            log.warning("notify %s: %s", host, type(exc).__name__)
            continue
        if response.ok:
            delivered += 1
        else:
            log.warning("notify %s: HTTP %s", host, response.status_code)
    return delivered
