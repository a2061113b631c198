"""Fetch and render queued deployments: read each service at exactly its commit (its
directory, and for kustomize every base and component it names, anywhere in the
repository), build, parse, validate, mutate, and store the bundle for the apply stage.
A batch (the services a poll found changed, up to ``GITOPS_FETCH_BATCH``) shares one
read of its rows and one source, which may read all their directories at once.

Rendering is pure and deterministic, so a redelivered fetch renders the same bundle; the
state guard (queued and not yet rendered) keeps a second fetch from storing it twice.
What the build read is recorded on the deployment, with its change-detection key, so
the next poll compares exactly those paths (``pipeline.changes``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from syncworker.models import Deployment, Service
from syncworker.pipeline import changes, lifecycle
from syncworker.render import (
    RenderError,
    RenderOptions,
    RenderResult,
    ServiceOptions,
    render_service,
)
from syncworker.render.bundle import Bundle, prepend
from syncworker.render.policy import check_tenancy
from syncworker.sources import Source, source_for
from syncworker.sources.base import (
    SourceError,
    SourceFile,
    SourceNotFound,
    UnsafePathError,
    normalize_dir,
)

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
    #: The cluster the deployment applies to (0: the default one), known without a query
    #: so the chain sends one apply per cluster for a batch.
    cluster_key: int = 0


@dataclass
class _Reader:
    """Reads through the source at one commit, and remembers every path asked for
    (found or not: a missing base that appears later must redeploy)."""

    source: Source
    commit: str
    paths: set[str] = field(default_factory=set)

    def read_dir(self, path: str) -> list[SourceFile]:
        self.paths.add(normalize_dir(path))
        return self.source.read_tree(self.commit, path)

    def read_file(self, path: str) -> bytes | None:
        self.paths.add(normalize_dir(path))
        return self.source.read_file(self.commit, path)


def fetch_and_render(deployment_id: int) -> FetchResult:
    (result,) = fetch_and_render_many([deployment_id])
    return result


def fetch_and_render_many(deployment_ids: Sequence[int]) -> list[FetchResult]:
    """Render a batch of deployments (the poll hands a repository's changed services on
    in batches): their rows in one read, one source per repository, and the directories
    of each commit's services read from it at once before each service renders."""
    rows = {
        deployment.pk: deployment
        for deployment in Deployment.objects.select_related("service__repository").filter(
            pk__in=deployment_ids
        )
    }
    results = {pk: FetchResult(pk) for pk in deployment_ids}
    groups: dict[tuple[int, str], list[Deployment]] = {}
    for pk, result in results.items():
        deployment = rows.get(pk)
        if deployment is None:
            result.skipped = "deployment no longer exists"
        elif deployment.status != Deployment.Status.QUEUED or deployment.bundle_digest:
            result.skipped = f"already rendered or {deployment.status}"
        else:
            groups.setdefault((deployment.service.repository_id, deployment.commit_sha), []).append(
                deployment
            )
    for (_, commit), group in groups.items():
        source = source_for(group[0].service.repository, workspace=settings.GITOPS["WORKSPACE"])
        _prefetch(source, commit, group)
        for deployment in group:
            result = results[deployment.pk]
            try:
                _fetch_one(deployment, source, result)
            except Exception as exc:
                # One service's surprise (a bug, a lost database) must not leave the rest
                # of the batch queued for the sweep, nor this one queued for ever.
                log.exception("fetch of deployment %s failed unexpectedly", deployment.pk)
                result.error = f"internal error: {type(exc).__name__}: {exc}"
                lifecycle.fail(deployment.pk, Reason.RENDER, result.error)
    return list(results.values())


def _prefetch(source: Source, commit: str, group: list[Deployment]) -> None:
    """Only a hint: whatever goes wrong here, each service's own read reports it."""
    if len(group) < 2:
        return
    directories = []
    for deployment in group:
        try:
            directories.append(normalize_dir(deployment.service.k8s_yaml_dir))
        except UnsafePathError:
            continue
    try:
        source.prefetch(commit, directories)
    except (SourceError, UnsafePathError) as exc:
        log.info("prefetch of %d directories at %s skipped: %s", len(directories), commit, exc)


def _fetch_one(deployment: Deployment, source: Source, result: FetchResult) -> None:
    result.cluster_key = deployment.cluster_id or deployment.service.cluster_id or 0
    service = deployment.service
    reader = _Reader(source, deployment.commit_sha)
    rendered: RenderResult | None = None
    failure: tuple[Reason, str] | None = None
    try:
        base_dir = normalize_dir(service.k8s_yaml_dir)
        rendered = _render(service, base_dir, deployment.commit_sha, reader)
    except (RenderError, UnsafePathError) as exc:
        failure = (Reason.RENDER, _render_message(exc))
    except SourceNotFound as exc:
        failure = (Reason.SOURCE, str(exc))
    except SourceError as exc:
        result.error = str(exc)
        if exc.transient:
            result.transient, result.retry_after = True, exc.retry_after
            return
        failure = (Reason.FETCH, f"fetch failed: {exc}")

    try:
        read = _what_was_read(deployment, reader)
    except SourceError as exc:
        if exc.transient and failure is None:
            result.error, result.transient, result.retry_after = str(exc), True, exc.retry_after
            return
        read = {}  # the failure already says what is wrong with the repository
    if failure is not None or rendered is None:
        reason, result.error = failure or (Reason.RENDER, "nothing rendered")
        lifecycle.fail(deployment.pk, reason, result.error, **read)
        return

    bundle = _with_namespace(rendered)
    repo = service.repository
    if problems := check_tenancy(
        bundle.objects,
        namespaces=repo.allowed_namespaces,
        cluster_resources=repo.allowed_cluster_resources,
    ):
        result.error = f"outside what repository {repo.key} may touch:\n" + "\n".join(problems)
        lifecycle.fail(deployment.pk, Reason.POLICY, result.error, **read)
        return
    result.rendered = lifecycle.store_bundle(
        deployment.pk,
        bundle=bundle.yaml,
        digest=bundle.digest,
        # The namespace to create is applied, never owned: out of the inventory.
        refs=rendered.bundle.refs,
        warnings=rendered.warnings,
        **read,
    )
    if not result.rendered:
        result.skipped = "rendered concurrently"


def _render(service: Service, base_dir: str, commit: str, reader: _Reader) -> RenderResult:
    scratch = Path(settings.GITOPS["WORKSPACE"], "render")
    scratch.mkdir(parents=True, exist_ok=True)
    rendered = render_service(
        reader.read_dir,
        RenderOptions(
            service=service.name,
            base_dir=base_dir,
            commit=commit,
            namespace=service.namespace,
            stateless=service.stateless,
            download_base_url=settings.GITOPS["DOWNLOAD_BASE_URL"],
        ),
        service_options=ServiceOptions(
            recurse=service.recurse,
            include=tuple(service.include),
            exclude=tuple(service.exclude),
            create_namespace=service.create_namespace,
        ),
        read_file=reader.read_file,
        scratch=str(scratch),
    )
    if not rendered.bundle.refs:
        # An empty bundle would prune everything the service owns: refuse it.
        skipped = len(rendered.warnings)
        why = f"; {skipped} skipped, see the warnings" if skipped else ""
        raise RenderError(
            [f"{base_dir or '.'}: no manifests (.yaml, .yml, .json) at this commit{why}"]
        )
    return rendered


def _what_was_read(deployment: Deployment, reader: _Reader) -> dict[str, Any]:
    """``paths_read`` and, when they differ from those the poll compared, the key over
    them at this commit (one more call to the source); nothing when nothing was read."""
    if not reader.paths:
        return {}
    paths = sorted(reader.paths)
    if paths == sorted(deployment.paths_read):
        return {"paths_read": paths}
    directory = normalize_dir(deployment.service.k8s_yaml_dir)
    compared = changes.compared_paths(directory, paths)
    key = changes.tree_key(directory, reader.source.tree_ids(deployment.commit_sha, compared))
    return {"paths_read": paths, "tree_sha": key or ""}


def _with_namespace(rendered: RenderResult) -> Bundle:
    """The bundle to apply: the service's namespace to create first, when there is one."""
    if rendered.namespace is None:
        return rendered.bundle
    return prepend(rendered.namespace, rendered.bundle)


def _render_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "invalid bundle:\n" + "\n".join(str(e) for e in errors)
    return f"invalid bundle: {exc}"


def render_at(service: Service, commit: str) -> Bundle:
    """The service's bundle at ``commit``, rendered exactly as a deployment's (for diffs).
    Raises RenderError, UnsafePathError or SourceError."""
    reader = _Reader(source_for(service.repository, workspace=settings.GITOPS["WORKSPACE"]), commit)
    rendered = _render(service, normalize_dir(service.k8s_yaml_dir), commit, reader)
    return _with_namespace(rendered)


def render_message(exc: Exception) -> str:
    return _render_message(exc)
