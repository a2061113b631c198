"""Fetch and render one queued deployment: read the service directory at exactly its
commit, parse, validate, mutate, and store the bundle; then queue the apply.

Rendering is pure and deterministic, so a redelivered fetch renders the same bundle; the
state guard keeps it from queueing a second apply once the first was queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from syncworker.models import Deployment
from syncworker.pipeline.inventory import refs_to_json
from syncworker.render import RenderError, RenderOptions, render_bundle
from syncworker.sources import source_for
from syncworker.sources.base import SourceError, UnsafePathError, normalize_dir

log = logging.getLogger(__name__)


@dataclass
class FetchResult:
    deployment_id: int
    skipped: str = ""
    error: str = ""
    transient: bool = False
    retry_after: float | None = None


def fetch_and_render(deployment_id: int) -> FetchResult:
    result = FetchResult(deployment_id)
    deployment = (
        Deployment.objects.select_related("service__repository").filter(pk=deployment_id).first()
    )
    if deployment is None:
        result.skipped = "deployment no longer exists"
        return result
    if deployment.status != Deployment.Status.QUEUED or deployment.bundle_digest:
        result.skipped = f"already rendered or {deployment.status}"
        return result
    service = deployment.service
    repo = service.repository
    try:
        base_dir = normalize_dir(service.k8s_yaml_dir)
        files = source_for(repo, workspace=settings.GITOPS["WORKSPACE"]).read_tree(
            deployment.commit_sha, base_dir
        )
        bundle = render_bundle(
            files,
            RenderOptions(
                service=service.name,
                base_dir=base_dir,
                commit=deployment.commit_sha,
                namespace=service.namespace,
                stateless=service.stateless,
                download_base_url=settings.GITOPS["DOWNLOAD_BASE_URL"],
            ),
        )
        if not bundle.refs:
            # An empty bundle would prune everything the service owns: refuse it.
            raise RenderError([f"{base_dir}: no manifests (.yaml, .yml, .json) at this commit"])
    except (RenderError, UnsafePathError) as exc:
        fail_before_apply(deployment, _render_message(exc))
        result.error = str(exc)
        return result
    except SourceError as exc:
        if exc.transient:
            result.error, result.transient, result.retry_after = str(exc), True, exc.retry_after
            return result
        fail_before_apply(deployment, f"fetch failed: {exc}")
        result.error = str(exc)
        return result

    with transaction.atomic():
        updated = Deployment.objects.filter(
            pk=deployment.pk, status=Deployment.Status.QUEUED, bundle_digest=""
        ).update(
            bundle=bundle.yaml,
            bundle_digest=bundle.digest,
            object_count=len(bundle.refs),
            applied_objects=refs_to_json(bundle.refs),
        )
        if updated:
            queue_apply(deployment.pk)
        else:
            result.skipped = "rendered concurrently"
    return result


def queue_apply(deployment_id: int) -> None:
    from syncworker.tasks import apply_deployment

    transaction.on_commit(lambda: apply_deployment.delay(deployment_id))


def fail_before_apply(deployment: Deployment, message: str) -> None:
    """A deployment whose bundle cannot be made fails without touching any cluster."""
    from syncworker.pipeline.deploying import finish

    now = timezone.now()
    claimed = Deployment.objects.filter(pk=deployment.pk, status=Deployment.Status.QUEUED).update(
        status=Deployment.Status.FAILED, error=message, started_at=now, finished_at=now
    )
    if claimed:
        finish(deployment.pk)


def _render_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "invalid bundle:\n" + "\n".join(str(e) for e in errors)
    return f"invalid bundle: {exc}"
