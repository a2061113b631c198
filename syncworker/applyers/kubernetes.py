"""KubernetesApplyer: server-side apply through the official Kubernetes client (the default).

Objects are applied phase by phase (namespaces, CRDs, cluster-scoped, basics, the rest,
custom resources); the objects of one phase do not depend on each other, so they are
sent concurrently by a bounded thread pool. Prune deletes only objects that still carry
our labels for the service, newest dependents first.

A re-sync of an unchanged bundle is cheap: the applyer remembers what it last applied to
each object (see :mod:`syncworker.applyers.applied`), and an object whose body has not
changed is skipped, as ``unchanged``, when one labelled LIST per kind and namespace shows
that nobody wrote to it since. Drift made by hand bumps the resourceVersion, so the
object is applied again and the drift corrected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from syncworker.applyers.applied import (
    MAX_REMEMBERED,
    Applied,
    AppliedObjects,
    Key,
    Listing,
    Manifest,
    ParsedBundles,
    key_of,
    list_live,
)
from syncworker.applyers.base import Applyer, PruneResult, TransientApplyError
from syncworker.applyers.kubeapi import (
    Discovery,
    KubeApi,
    KubeConfigError,
    Resource,
    Response,
    load_configuration,
)
from syncworker.applyers.manifests import CRD, CUSTOM, load_objects, phase_of
from syncworker.kube.kinds import group_of
from syncworker.kube.labels import FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef

APPLY_QUERY = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Metadata only: prune needs labels, uid and resourceVersion, not a whole ConfigMap.
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class _Target:
    ref: ObjectRef
    resource: Resource

    @property
    def path(self) -> str:
        return self.resource.path(self.ref.namespace, self.ref.name)

    @property
    def display(self) -> str:
        return self.resource.display(self.ref.name)


@dataclass(frozen=True)
class _Job:
    """One object to apply: where it goes, and what is sent."""

    target: _Target
    manifest: Manifest

    @property
    def key(self) -> Key:
        return key_of(self.target.ref)


@dataclass
class _Progress:
    """What an apply did so far; ``lines`` (applied and unchanged) keep the bundle order."""

    errors: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    applied: int = 0
    unchanged: int = 0

    def counts(self) -> str:
        return f"{self.applied} objects applied, {self.unchanged} unchanged"


class KubernetesApplyer(Applyer):
    can_prune = True

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        max_workers: int = 8,
        timeout: float = 30.0,
        crd_timeout: float = 60.0,
        verify_unchanged: bool = True,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.kubeconfig = kubeconfig
        self.context = context
        self.max_workers = max_workers
        self.timeout = timeout
        self.crd_timeout = crd_timeout
        self.verify_unchanged = verify_unchanged
        # Kept across close(): every entry is checked against the server before it is
        # trusted, so it cannot go stale in a way that matters.
        self.remembered = AppliedObjects(max_remembered)
        self.parsed = ParsedBundles()
        self._namespace = namespace
        self._api: KubeApi | None = None
        self._discovery: Discovery | None = None

    def _connect(self) -> tuple[KubeApi, Discovery, str]:
        if self._api is None or self._discovery is None:
            configuration, namespace = load_configuration(
                kubeconfig=self.kubeconfig, context=self.context, max_connections=self.max_workers
            )
            self._namespace = self._namespace or namespace
            self._api = KubeApi(configuration, timeout=self.timeout)
            self._discovery = Discovery(self._api)
        return self._api, self._discovery, self._namespace or "default"

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
        self._api = self._discovery = None

    def install(self) -> tuple[bool, str]:
        try:
            api, _, _ = self._connect()
            response = api.request("GET", "/version")
        except (KubeConfigError, TransientApplyError) as exc:
            return False, str(exc)
        if response.status != 200:
            return False, f"{api.server}: {response.message()}"
        return True, f"kubernetes {response.json().get('gitVersion', '?')} at {api.server}"

    def apply(self, yaml_content: str) -> tuple[bool, str]:
        try:
            if self.verify_unchanged:
                objects = self.parsed.manifests(yaml_content)
            else:
                objects = tuple(map(Manifest.of, load_objects(yaml_content)))
        except ValueError as exc:
            return False, f"invalid bundle: {exc}"
        if not objects:
            return True, "nothing to apply: the bundle has no objects"
        started = time.monotonic()
        done = _Progress()
        try:
            api, discovery, namespace = self._connect()
            with ThreadPoolExecutor(self.max_workers, thread_name_prefix="kube-apply") as pool:
                self._apply_phases(pool, api, discovery, namespace, objects, done)
        except TransientApplyError as exc:
            raise TransientApplyError(
                f"{exc} ({done.applied} of {len(objects)} objects applied, "
                f"{done.unchanged} unchanged, in earlier phases)",
                retry_after=exc.retry_after,
            ) from exc
        except KubeConfigError as exc:
            done.errors.append(str(exc))
        seconds = time.monotonic() - started
        if done.errors:
            summary = (
                f"failed: {done.applied} of {len(objects)} objects applied, "
                f"{done.unchanged} unchanged in {seconds:.1f}s"
            )
            return False, "\n".join([*done.errors, *done.lines, summary])
        return True, "\n".join([*done.lines, f"{done.counts()} in {seconds:.1f}s"])

    def _apply_phases(
        self,
        pool: ThreadPoolExecutor,
        api: KubeApi,
        discovery: Discovery,
        namespace: str,
        objects: Sequence[Manifest],
        done: _Progress,
    ) -> None:
        """Phase after phase, each phase's objects at once; stops after a failing phase.

        Unchanged objects of a phase are found just before the phase is applied, so the
        LISTs see what the earlier phases did (and the custom resources' kinds are known).
        """
        locate = _Locator(discovery, namespace)
        crds: list[_Job] = []
        by_phase: dict[int, list[Manifest]] = {}
        for manifest in objects:
            by_phase.setdefault(manifest.phase, []).append(manifest)
        for phase, batch in sorted(by_phase.items()):
            if phase == CUSTOM and crds:
                crd_objects = [job.manifest.object() for job in crds]
                done.errors += self._await_crds(api, discovery, crd_objects)
                if done.errors:
                    for job in crds:  # so that the next attempt applies and awaits them again
                        self.remembered.forget(job.key)
                    return
            jobs: list[_Job] = []
            for manifest in batch:
                target = locate(manifest.ref)
                if isinstance(target, str):
                    done.errors.append(target)
                else:
                    jobs.append(_Job(target, manifest))
            unchanged = self._unchanged(pool, api, jobs, done.lines)
            todo = [job for i, job in enumerate(jobs) if i not in unchanged]
            outcomes = iter(_run_all(pool, lambda job: self._apply_one(api, job), todo))
            for i, job in enumerate(jobs):
                if i in unchanged:
                    done.lines.append(f"{job.target.display} unchanged")
                    done.unchanged += 1
                    continue
                ok, line = next(outcomes)
                if ok:
                    done.lines.append(line)
                    done.applied += 1
                    # Only these are awaited: an unchanged CRD was awaited by the apply that
                    # is remembered (a failed wait forgets it).
                    if phase == CRD:
                        crds.append(job)
                else:
                    done.errors.append(line)
            if done.errors:  # later phases may depend on what failed
                return

    def _unchanged(
        self, pool: ThreadPoolExecutor, api: KubeApi, jobs: Sequence[_Job], notes: list[str]
    ) -> set[int]:
        """Indexes of the jobs whose body is the one we last applied and whose object
        nobody wrote to since: one paginated LIST per kind, namespace and service."""
        if not self.verify_unchanged:
            return set()
        groups: dict[tuple[Resource, str, str], list[tuple[int, Applied]]] = {}
        for i, job in enumerate(jobs):
            manifest = job.manifest
            last = self.remembered.get(job.key)
            if last is None or last.digest != manifest.digest or manifest.selector is None:
                continue
            group = (job.target.resource, job.target.ref.namespace, manifest.selector)
            groups.setdefault(group, []).append((i, last))
        if not groups:
            return set()
        listed: list[Listing] = _run_all(pool, lambda group: list_live(api, *group), list(groups))
        unchanged: set[int] = set()
        for (group, members), listing in zip(groups.items(), listed, strict=True):
            if listing.problem:
                notes.append(
                    f"{_collection(*group[:2])}: cannot list to find unchanged objects, "
                    f"applying them: {listing.problem}"
                )
            for i, last in members:
                if listing.live.get(jobs[i].target.ref.name) == (last.resource_version, last.uid):
                    unchanged.add(i)
        return unchanged

    def _apply_one(self, api: KubeApi, job: _Job) -> tuple[bool, str]:
        target = job.target
        # Forgotten until the server confirms the apply: after a failure (or an exception)
        # we cannot know what is on the cluster.
        self.remembered.forget(job.key)
        response = api.request(
            "PATCH",
            target.path,
            query=APPLY_QUERY,
            body=job.manifest.body,
            content_type=APPLY_CONTENT_TYPE,
        )
        if response.status in (200, 201):
            if self.verify_unchanged:
                self._remember(job, response)
            return True, f"{target.display} serverside-applied"
        if response.status == 409:  # a write raced ours; the next attempt sees the new state
            raise TransientApplyError(f"{target.ref}: {response.message()}")
        return False, f"{target.ref}: {response.message()}"

    def _remember(self, job: _Job, response: Response) -> None:
        try:
            answer = response.json()
        except ValueError:  # nothing to go by: the object is applied again next time
            return
        meta = (answer.get("metadata") if isinstance(answer, dict) else None) or {}
        version, uid = meta.get("resourceVersion"), meta.get("uid")
        if isinstance(version, str) and version and isinstance(uid, str) and uid:
            self.remembered.remember(job.key, Applied(job.manifest.digest, version, uid))

    def _await_crds(
        self, api: KubeApi, discovery: Discovery, crds: Sequence[dict[str, Any]]
    ) -> list[str]:
        """Wait until the CRDs are Established and discovery lists their kinds."""
        deadline = time.monotonic() + self.crd_timeout
        pending = {crd["metadata"]["name"]: crd for crd in crds}
        last: dict[str, str] = {}
        while pending:
            for name in list(pending):
                response = api.request("GET", f"{CRD_PATH}/{name}")
                if response.status == 200:
                    established, last[name] = _established(response.json())
                    if established:
                        del pending[name]
            if pending and time.monotonic() > deadline:
                return [
                    f"CustomResourceDefinition {name}: not Established after "
                    f"{self.crd_timeout:.0f}s ({last.get(name) or 'no status'})"
                    for name in pending
                ]
            if pending:
                time.sleep(0.1)
        # Discovery is published a moment after the Established condition.
        for crd in crds:
            spec = crd.get("spec") or {}
            kind = (spec.get("names") or {}).get("kind", "")
            for version in spec.get("versions") or []:
                if not version.get("served", True):
                    continue
                api_version = f"{spec.get('group')}/{version.get('name')}"
                discovery.forget(api_version)
                while discovery.resolve(api_version, kind, refresh=False) is None:
                    if time.monotonic() > deadline:
                        return [f"{kind} ({api_version}): not served {self.crd_timeout:.0f}s "
                                "after its CustomResourceDefinition was Established"]  # fmt: skip
                    time.sleep(0.1)
                    discovery.forget(api_version)
        return []

    def prune(self, refs: Sequence[ObjectRef], *, service: str) -> PruneResult:
        if not refs:
            return PruneResult(ok=True, output="nothing to prune")
        lines: list[str] = []
        pruned: list[ObjectRef] = []
        failed = False
        try:
            api, discovery, namespace = self._connect()
            locate = _Locator(discovery, namespace)
            by_phase: dict[int, list[ObjectRef]] = {}
            for ref in refs:
                by_phase.setdefault(phase_of(ref.api_version, ref.kind), []).append(ref)
            with ThreadPoolExecutor(self.max_workers, thread_name_prefix="kube-prune") as pool:
                for _, batch in sorted(by_phase.items(), reverse=True):
                    targets: list[_Target] = []
                    for ref in batch:
                        target = locate(ref)
                        # Whatever prune decides, what we last applied no longer stands.
                        self.remembered.forget(
                            key_of(ref if isinstance(target, str) else target.ref)
                        )
                        if isinstance(target, str):  # its kind is gone, and the object with it
                            lines.append(f"{ref} already gone (kind no longer served)")
                            pruned.append(ref)
                        else:
                            targets.append(target)
                    outcomes = _run_all(pool, lambda t: _prune_one(api, t, service), targets)
                    for target, (status, line) in zip(targets, outcomes, strict=True):
                        lines.append(line)
                        if status in ("deleted", "gone"):
                            pruned.append(target.ref)
                        failed = failed or status == "failed"
        except KubeConfigError as exc:
            return PruneResult(ok=False, output="\n".join([str(exc), *lines]), pruned=pruned)
        lines.append(f"{len(pruned)} of {len(refs)} objects pruned")
        return PruneResult(ok=not failed, output="\n".join(lines), pruned=pruned)


class _Locator:
    """Resolves refs to API paths; a kind missing from discovery is looked up again once."""

    def __init__(self, discovery: Discovery, namespace: str) -> None:
        self._discovery = discovery
        self._namespace = namespace
        self._seen: dict[tuple[str, str], Resource | None] = {}

    def __call__(self, ref: ObjectRef) -> _Target | str:
        key = (ref.api_version, ref.kind)
        if key not in self._seen:
            self._seen[key] = self._discovery.resolve(*key)
        resource = self._seen[key]
        if resource is None:
            return f"{ref}: the server does not serve kind {ref.kind} in {ref.api_version}"
        namespace = (ref.namespace or self._namespace) if resource.namespaced else ""
        return _Target(ObjectRef(ref.api_version, ref.kind, namespace, ref.name), resource)


def _collection(resource: Resource, namespace: str) -> str:
    """``configmaps in shop``, ``widgets.example.com``: a LIST, as a person reads it."""
    group = group_of(resource.api_version)
    where = f" in {namespace}" if namespace else ""
    return f"{resource.plural}{'.' + group if group else ''}{where}"


def _prune_one(api: KubeApi, target: _Target, service: str) -> tuple[str, str]:
    """Delete one object if it is ours: ("deleted" | "gone" | "kept" | "failed", line)."""
    response = api.request("GET", target.path, accept=METADATA_ACCEPT)
    if response.status == 404:
        return "gone", f"{target.display} already gone"
    if response.status != 200:
        return "failed", f"{target.ref}: {response.message()}"
    meta = response.json().get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or labels.get(SERVICE_LABEL) != service:
        return "kept", f"{target.display} left alone: not labelled as {service}'s"
    # The preconditions make sure we delete the very object whose labels we just read.
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
    }
    response = api.request("DELETE", target.path, body=options)
    if response.status in (200, 202):
        return "deleted", f"{target.display} deleted"
    if response.status == 404:
        return "gone", f"{target.display} already gone"
    if response.status == 409:
        raise TransientApplyError(f"{target.ref} changed while it was being pruned")
    return "failed", f"{target.ref}: {response.message()}"


def _established(crd: dict[str, Any]) -> tuple[bool, str]:
    for condition in (crd.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Established":
            return condition.get("status") == "True", str(condition.get("message") or "")
    return False, ""


def _run_all(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``fn`` over ``items`` on the pool, results in order; the first error stops the rest."""
    futures = [pool.submit(fn, item) for item in items]
    _, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    wait(pending)
    for future in futures:
        if not future.cancelled() and (error := future.exception()) is not None:
            raise error
    return [future.result() for future in futures]
