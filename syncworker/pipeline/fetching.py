"""Fetch and render one queued deployment: read the service directory at exactly its
commit, parse, validate, mutate, and store the bundle for the apply stage.

Rendering is pure and deterministic, so a redelivered fetch renders the same bundle; the
state guard (queued and not yet rendered) keeps a second fetch from storing it twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from syncworker.models import Deployment
from syncworker.pipeline import lifecycle
from syncworker.render import RenderError, RenderOptions, render_bundle
from syncworker.render.policy import check_tenancy
from syncworker.sources import source_for
from syncworker.sources.base import SourceError, UnsafePathError, normalize_dir

log = logging.getLogger(__name__)
Reason = Deployment.Reason


@dataclass
class FetchResult:
    deployment_id: int
    rendered: bool = False
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
    try:
        base_dir = normalize_dir(service.k8s_yaml_dir)
        files = source_for(service.repository, workspace=settings.GITOPS["WORKSPACE"]).read_tree(
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
            raise RenderError(
                [f"{base_dir or '.'}: no manifests (.yaml, .yml, .json) at this commit"]
            )
    except (RenderError, UnsafePathError) as exc:
        result.error = _render_message(exc)
        lifecycle.fail(deployment.pk, Reason.RENDER, result.error)
        return result
    except SourceError as exc:
        result.error = str(exc)
        if exc.transient:
            result.transient, result.retry_after = True, exc.retry_after
        else:
            lifecycle.fail(deployment.pk, Reason.FETCH, f"fetch failed: {exc}")
        return result

    repo = service.repository
    if problems := check_tenancy(
        bundle.objects,
        namespaces=repo.allowed_namespaces,
        cluster_resources=repo.allowed_cluster_resources,
    ):
        result.error = f"outside what repository {repo.key} may touch:\n" + "\n".join(problems)
        lifecycle.fail(deployment.pk, Reason.POLICY, result.error)
        return result
    result.rendered = lifecycle.store_bundle(
        deployment.pk, bundle=bundle.yaml, digest=bundle.digest, refs=bundle.refs
    )
    if not result.rendered:
        result.skipped = "rendered concurrently"
    return result


def _render_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "invalid bundle:\n" + "\n".join(str(e) for e in errors)
    return f"invalid bundle: {exc}"
