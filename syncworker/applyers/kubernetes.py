"""KubernetesApplyer: server-side apply through the official Kubernetes client (the default).

Nothing changes until the server has validated it. Every object is first sent as a
server-side dry run (``dryRun=All``, our field manager, strict field validation, force),
and only when every one passes is anything applied. What the server cannot validate yet
waits for what the bundle itself brings, staged as Flux does: objects in a namespace the
bundle creates, and custom resources of a CRD the bundle creates or changes. Once the
first dry runs all passed, the bundle's Namespaces and CRDs are applied (CRDs awaited
until Established), the waiting objects are dry-run in turn, and only if they pass is
the rest applied. Every rejection is reported, each naming its object; a namespace that
objects need and that neither exists nor is in the bundle is named with those objects.

Objects are applied phase by phase (namespaces, CRDs, cluster-scoped, basics, the rest,
custom resources); the objects of one phase do not depend on each other, so they are
sent concurrently by a bounded thread pool. An object annotated create-only is created
when missing (a POST; AlreadyExists is fine) and otherwise left exactly as it is.

A re-sync of an unchanged bundle is cheap: the applyer remembers what it last applied to
each object (see :mod:`syncworker.applyers.applied`), and an object whose body has not
changed is skipped, neither dry-run nor applied, when one labelled LIST per kind and
namespace shows that nobody wrote to it since. Drift made by hand bumps the
resourceVersion, so the object is applied again and the drift corrected. An object this
process does not remember (a new worker, another worker) is dry-run and, as Flux's ssa
manager does, applied only when the dry run's answer differs from the live object the
same LIST brought. When a single object is left to write, it is applied at once: its
apply is its validation, and no other object can be half-applied beside it.

Before a bundle's PreSync hooks, ``prepare_bundle`` runs the same checks and creates only
the namespaces that are missing (the service's and the bundle's own): the hooks need
them, and Argo CD creates the application's namespace before its dry run and the PreSync
phase too. Nothing else is written until the hooks succeeded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from syncworker.applyers import kubehooks, kuberead, kubesend
from syncworker.applyers.applied import (
    MAX_REMEMBERED,
    Applied,
    AppliedObjects,
    Listing,
    Manifest,
    ParsedBundles,
    get_live,
    list_live,
    same_as_live,
)
from syncworker.applyers.base import (
    Applyer,
    ApplyReport,
    HookError,
    LiveHook,
    PruneResult,
    TransientApplyError,
)
from syncworker.applyers.kubeapi import (
    Discovery,
    KubeApi,
    KubeConfigError,
    Resource,
    load_configuration,
)
from syncworker.applyers.kubediff import DiffError, ObjectDiff, diff_manifests
from syncworker.applyers.kubeobjects import Job, Locator, Progress, collection_name, run_all
from syncworker.applyers.kubeprune import prune
from syncworker.applyers.kubesend import Checked
from syncworker.applyers.manifests import CRD, CUSTOM, NAMESPACE, load_objects
from syncworker.health import assess, summarize
from syncworker.kube.kinds import crd_scopes
from syncworker.kube.refs import ObjectRef

DEFINITIONS = (NAMESPACE, CRD)
WAVE_POLL_SECONDS = 1.0
# Up to this many objects of one kind in one namespace are read by name, not listed.
GET_AT_MOST = 8


class KubernetesApplyer(Applyer):
    can_prune = True
    can_read = True
    can_run_hooks = True

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        max_workers: int = 8,
        timeout: float = 30.0,
        crd_timeout: float = 60.0,
        wave_timeout: float = 300.0,
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
        self.wave_timeout = wave_timeout
        self.verify_unchanged = verify_unchanged
        # Kept across close(): every entry is checked against the server before it is
        # trusted, so it cannot go stale in a way that matters.
        self.remembered = AppliedObjects(max_remembered)
        self.parsed = ParsedBundles()
        self._namespace = namespace
        self._api: KubeApi | None = None
        self._discovery: Discovery | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

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
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _workers(self) -> ThreadPoolExecutor:
        """The applyer's request threads, started once: a pool per bundle started and
        joined eight threads for every deployment (a few % of an apply worker's CPU)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="kube-apply")
            return self._pool

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
        report = self.apply_bundle(yaml_content)
        return report.ok, report.output

    def apply_bundle(
        self, yaml_content: str, *, held: Collection[ObjectRef] | None = None
    ) -> ApplyReport:
        return self._run(yaml_content, held, before_hooks=False)

    def prepare_bundle(
        self, yaml_content: str, *, held: Collection[ObjectRef] | None = None
    ) -> ApplyReport:
        return self._run(yaml_content, held, before_hooks=True)

    def _run(
        self, yaml_content: str, held: Collection[ObjectRef] | None, *, before_hooks: bool
    ) -> ApplyReport:
        try:
            if self.verify_unchanged:
                objects = self.parsed.manifests(yaml_content)
            else:
                objects = tuple(map(Manifest.of, load_objects(yaml_content)))
        except ValueError as exc:
            return ApplyReport(False, f"invalid bundle: {exc}")
        create_only = [m.ref for m in objects if m.create_only]
        if not objects:
            return ApplyReport(True, "nothing to apply: the bundle has no objects")
        started = time.monotonic()
        done = Progress(len(objects))
        try:
            api, discovery, namespace = self._connect()
            self._apply_staged(
                self._workers(), api, discovery, namespace, objects, done, held, before_hooks
            )
        except TransientApplyError as exc:
            raise TransientApplyError(
                f"{exc} ({done.applied} of {len(objects)} objects applied, "
                f"{done.unchanged} unchanged, before the error)",
                retry_after=exc.retry_after,
                applied=done.reached,
            ) from exc
        except KubeConfigError as exc:
            done.errors.append(str(exc))
        output = done.output(time.monotonic() - started)
        return ApplyReport(not done.errors, output, list(done.reached), create_only)

    def _apply_staged(
        self,
        pool: ThreadPoolExecutor,
        api: KubeApi,
        discovery: Discovery,
        namespace: str,
        objects: Sequence[Manifest],
        done: Progress,
        held: Collection[ObjectRef] | None = None,
        before_hooks: bool = False,
    ) -> None:
        """Dry-run what can be validated now; apply the bundle's namespaces and CRDs;
        dry-run what waited for them; apply the rest, phase after phase. Each step runs
        only if every check before it passed. ``before_hooks``: stop once the missing
        namespaces are created and what waited for them is dry-run."""
        jobs, unserved = self._locate(Locator(discovery, namespace), enumerate(objects), done)
        if held is not None:
            # Objects the service never had here are new: nothing to read before their
            # dry run (a cold sync of 10,000 services reads nothing).
            ours = {ref.identity for ref in held}
            new = {i for i, job in enumerate(jobs) if job.target.ref.identity not in ours}
        else:
            new = set()
        todo = self._skip_unchanged(pool, api, jobs, done, new=new)
        if (
            not before_hooks
            and len(todo) == 1
            and not unserved
            and not done.errors
            and todo[0].manifest.phase != CRD
            and len({m.wave for m in objects}) == 1
        ):
            # One object left to write: its apply validates it as its dry run would, and
            # either changes it or changes nothing; a dry run first only doubles the cost.
            self._apply(pool, api, todo, done)
            return

        # Stage 1: namespaces and CRDs first, as whether their objects can be validated
        # now depends on what these dry runs say.
        definitions = [job for job in todo if job.manifest.phase in DEFINITIONS]
        verdicts = self._dry_run(pool, api, definitions, done)
        # A namespace of the bundle is there when it is unchanged or its dry run updated it.
        checked = {j.target.ref.name: v.exists for j, v in zip(definitions, verdicts, strict=True)}
        waiting_namespaces = {
            job.target.ref.name
            for job in jobs
            if job.manifest.phase == NAMESPACE and checked.get(job.target.ref.name) is False
        }
        changed_kinds = _defined_kinds(job.manifest for job in definitions)
        now: list[Job] = []
        later: list[Job] = []
        for job in todo:
            if job.manifest.phase in DEFINITIONS:
                continue
            ref, resource = job.target.ref, job.target.resource
            waits = (resource.namespaced and ref.namespace in waiting_namespaces) or (
                (ref.group, ref.kind) in changed_kinds
            )
            (later if waits else now).append(job)
        self._dry_run(pool, api, now, done)
        if done.errors:
            return
        if before_hooks:
            self._prepare_namespaces(pool, api, definitions, later, waiting_namespaces, done)
            return

        # Stage 2: the bundle's namespaces and CRDs, then what waited for them.
        for phase in DEFINITIONS:
            batch = [job for job in definitions if job.manifest.phase == phase]
            if not self._apply(pool, api, batch, done):
                return
        crds = [job for job in definitions if job.manifest.phase == CRD]
        if crds and (unserved or any(m.phase == CUSTOM for m in objects)):
            definitions_ = [job.manifest.object() for job in crds]
            errors = kubesend.await_crds(api, discovery, definitions_, timeout=self.crd_timeout)
            if errors:
                for job in crds:  # so that the next attempt applies and awaits them again
                    self.remembered.forget(job.key)
                done.errors += errors
                return
        if unserved:
            served, _ = self._locate(Locator(discovery, namespace), unserved, done, final=True)
            # Kinds the bundle's CRDs just defined: nothing to compare a dry run with yet.
            later += self._skip_unchanged(pool, api, served, done, compare_live=False)
        self._dry_run(pool, api, later, done)
        if done.errors:
            return

        # Stage 3: everything else, wave after wave and within a wave phase after phase;
        # a failing phase stops the apply, as later ones may depend on it. Each wave is
        # healthy before the next starts (namespaces and CRDs went first, whatever their
        # wave: the rest cannot even be validated without them).
        by_wave: dict[int, dict[int, list[Job]]] = {}
        for job in now + later:
            wave = by_wave.setdefault(job.manifest.wave, {})
            wave.setdefault(job.manifest.phase, []).append(job)
        waves = sorted(by_wave)
        for number in waves:
            for _, batch in sorted(by_wave[number].items()):
                if not self._apply(pool, api, batch, done):
                    return
            if number != waves[-1]:
                in_wave = [m.ref for m in objects if m.wave == number]
                if not self._await_wave(api, discovery, namespace, number, in_wave, done):
                    return

    def _prepare_namespaces(
        self,
        pool: ThreadPoolExecutor,
        api: KubeApi,
        definitions: Sequence[Job],
        later: Sequence[Job],
        missing: Collection[str],
        done: Progress,
    ) -> None:
        """Before the PreSync hooks: create the ``missing`` namespaces, then dry-run the
        objects that waited only for them. CRDs and their custom resources wait for the
        apply after the hooks, as in Argo CD, where they belong to the Sync phase."""
        batch = [
            job
            for job in definitions
            if job.manifest.phase == NAMESPACE and job.target.ref.name in missing
        ]
        if not self._apply(pool, api, batch, done):
            return
        kinds = _defined_kinds(job.manifest for job in definitions)
        ready = [job for job in later if (job.target.ref.group, job.target.ref.kind) not in kinds]
        self._dry_run(pool, api, ready, done)

    def _await_wave(
        self,
        api: KubeApi,
        discovery: Discovery,
        namespace: str,
        number: int,
        refs: list[ObjectRef],
        done: Progress,
    ) -> bool:
        """Wait until every object of wave ``number`` is healthy (kstatus' rules)."""
        deadline = time.monotonic() + self.wave_timeout
        while True:
            try:
                live = kuberead.read(api, discovery, namespace, refs, max_workers=self.max_workers)
            except kuberead.ReadError as exc:
                done.errors.append(f"wave {number}: health not readable: {exc}")
                return False
            health = summarize((ref, assess(live.get(ref))) for ref in refs)
            if health.healthy:
                done.notes.append(f"wave {number}: {health.message}")
                return True
            if time.monotonic() >= deadline:
                done.errors.append(
                    f"wave {number} not healthy within {self.wave_timeout:g}s:\n{health.message}"
                )
                return False
            time.sleep(WAVE_POLL_SECONDS)

    def _locate(
        self,
        locate: Locator,
        objects: Iterable[tuple[int, Manifest]],
        done: Progress,
        *,
        final: bool = False,
    ) -> tuple[list[Job], list[tuple[int, Manifest]]]:
        """Jobs for the objects (by place in the bundle) the server serves; the objects of
        kinds that a CRD of the bundle will serve come back for later (unless ``final``);
        any other is rejected."""
        objects = list(objects)
        brought = set() if final else _defined_kinds(m for _, m in objects)
        jobs: list[Job] = []
        unserved: list[tuple[int, Manifest]] = []
        for index, manifest in objects:
            target = locate(manifest.ref)
            if not isinstance(target, str):
                jobs.append(Job(target, manifest, index))
            elif (manifest.ref.group, manifest.ref.kind) in brought:
                unserved.append((index, manifest))
            else:
                done.reject(target)
        return jobs, unserved

    def _skip_unchanged(
        self,
        pool: ThreadPoolExecutor,
        api: KubeApi,
        jobs: Sequence[Job],
        done: Progress,
        *,
        compare_live: bool = True,
        new: Collection[int] = (),
    ) -> list[Job]:
        """The jobs left once the unchanged objects are set aside (and reported); the
        jobs at indexes ``new`` are not looked for."""
        unchanged = self._unchanged(pool, api, jobs, done, compare_live, new)
        for i in sorted(unchanged):
            done.done(jobs[i], f"{jobs[i].target.display} unchanged", changed=False)
        return [job for i, job in enumerate(jobs) if i not in unchanged]

    def _unchanged(
        self,
        pool: ThreadPoolExecutor,
        api: KubeApi,
        jobs: Sequence[Job],
        done: Progress,
        compare_live: bool,
        new: Collection[int] = (),
    ) -> set[int]:
        """Indexes of the jobs whose body is the one we last applied and whose object
        nobody wrote to since: per kind, namespace and service, a GET of each object when
        there are at most ``GET_AT_MOST`` of them, else one paginated labelled LIST.

        Of the objects this process does not remember applying (a new worker, another
        worker), the read brings the live objects (``done.live``): their dry runs are
        compared with them, and an apply that would change nothing is not sent.
        """
        if not self.verify_unchanged:
            return set()
        groups: dict[tuple[Resource, str, str], list[tuple[int, Applied | None]]] = {}
        for i, job in enumerate(jobs):
            manifest = job.manifest
            last = self.remembered.get(job.key)
            if manifest.selector is None or manifest.create_only:
                continue
            if last is None and (not compare_live or i in new):
                continue
            if last is not None and last.digest != manifest.digest:
                continue  # a new body: it is applied
            group = (job.target.resource, job.target.ref.namespace, manifest.selector)
            groups.setdefault(group, []).append((i, last))
        if not groups:
            return set()
        full = {group for group, members in groups.items() if any(m is None for _, m in members)}
        # A few objects of a kind are read by name, more by one labelled LIST.
        reads: list[tuple[tuple[Resource, str, str], str | None]] = []
        for group, members in groups.items():
            if len(members) <= GET_AT_MOST:
                reads += [(group, jobs[i].target.ref.name) for i, _ in members]
            else:
                reads.append((group, None))

        def read(item: tuple[tuple[Resource, str, str], str | None]) -> Listing:
            group, name = item
            if name is None:
                return list_live(api, *group, full=group in full)
            return get_live(api, *group, name, full=group in full)

        listings: dict[tuple[Resource, str, str], Listing] = {}
        for (group, _), answer in zip(reads, run_all(pool, read, reads), strict=True):
            listing = listings.setdefault(group, Listing())
            listing.live.update(answer.live)
            listing.objects.update(answer.objects)
            listing.problem = listing.problem or answer.problem
        unchanged: set[int] = set()
        for group, members in groups.items():
            listing = listings[group]
            if listing.problem:  # not an error: these objects are simply applied
                done.notes.append(
                    f"{collection_name(*group[:2])}: cannot list to find unchanged objects, "
                    f"applying them: {listing.problem}"
                )
            for i, last in members:
                name = jobs[i].target.ref.name
                if last is None:
                    if (obj := listing.objects.get(name)) is not None:
                        done.live[jobs[i].index] = obj
                elif listing.live.get(name) == (last.resource_version, last.uid):
                    unchanged.add(i)
        return unchanged

    def _dry_run(
        self, pool: ThreadPoolExecutor, api: KubeApi, jobs: Sequence[Job], done: Progress
    ) -> list[Checked]:
        """Dry-run ``jobs`` at once; every rejection is recorded, those for want of a
        namespace grouped by namespace."""
        verdicts: list[Checked] = run_all(
            pool, lambda job: kubesend.dry_run(api, job, answer=job.index in done.live), jobs
        )
        needing: dict[str, list[Job]] = {}
        for job, verdict in zip(jobs, verdicts, strict=True):
            if verdict.ok:
                if verdict.exists and job.manifest.create_only:
                    done.existing.add(job.index)
                live = done.live.get(job.index)
                if live is not None and verdict.answer and same_as_live(verdict.answer, live):
                    done.same.add(job.index)
            elif verdict.missing_namespace:
                needing.setdefault(verdict.missing_namespace, []).append(job)
            else:
                done.reject(verdict.problem)
        for namespace, waiting in needing.items():
            names = ", ".join(str(job.target.ref) for job in waiting)
            done.reject(f"namespace '{namespace}' does not exist; needed by {names}", len(waiting))
        return verdicts

    def _apply(
        self, pool: ThreadPoolExecutor, api: KubeApi, jobs: Sequence[Job], done: Progress
    ) -> bool:
        """Apply ``jobs`` at once; False when any failed (each failure is recorded)."""
        todo: list[Job] = []
        for job in jobs:
            if job.index in done.existing:  # create-only, and its dry run found it
                done.done(job, f"{job.target.display} exists, left as it is", changed=False)
            elif job.index in done.same:  # its dry run is the live object: nothing to do
                self._remember(job, done.live[job.index])
                done.done(job, f"{job.target.display} unchanged", changed=False)
            else:
                todo.append(job)
        failures = [e for e in run_all(pool, lambda j: self._apply_one(api, j, done), todo) if e]
        done.errors += failures
        return not failures

    def _apply_one(self, api: KubeApi, job: Job, done: Progress) -> str:
        """Apply one object and record it in ``done``; the error, or "" when it worked."""
        if job.manifest.create_only:
            created, line = kubesend.create(api, job)
            if created is not None:
                done.done(job, line, changed=created)
                return ""
            return line
        # Forgotten until the server confirms the apply: after a failure (or an exception)
        # we cannot know what is on the cluster.
        self.remembered.forget(job.key)
        response = kubesend.patch(api, job, kubesend.APPLY_QUERY)
        if response.status not in (200, 201):
            if namespace := kubesend.missing_namespace(response, job.target.ref.namespace):
                return f"namespace '{namespace}' does not exist; needed by {job.target.ref}"
            return f"{job.target.ref}: {response.message()}"
        # Not JSON: nothing to go by, the object is applied again next time.
        if self.verify_unchanged:
            with contextlib.suppress(ValueError):
                self._remember(job, response.json())
        done.done(job, f"{job.target.display} serverside-applied", changed=True)
        return ""

    def _remember(self, job: Job, answer: Any) -> None:
        meta = (answer.get("metadata") if isinstance(answer, dict) else None) or {}
        version, uid = meta.get("resourceVersion"), meta.get("uid")
        if isinstance(version, str) and version and isinstance(uid, str) and uid:
            self.remembered.remember(job.key, Applied(job.manifest.digest, version, uid))

    def diff(self, yaml_content: str) -> list[ObjectDiff]:
        """What applying ``yaml_content`` would change, per object, changing nothing.
        DiffError for a bundle the server rejects; TransientApplyError or KubeConfigError
        when the cluster cannot be asked."""
        try:
            objects = self.parsed.manifests(yaml_content)
        except ValueError as exc:
            raise DiffError(f"invalid bundle: {exc}") from exc
        api, discovery, namespace = self._connect()
        return diff_manifests(self._workers(), api, discovery, namespace, objects)

    def prune(self, refs: Sequence[ObjectRef], *, service: str) -> PruneResult:
        if not refs:
            return PruneResult(ok=True, output="nothing to prune")
        try:
            api, discovery, namespace = self._connect()
        except KubeConfigError as exc:
            return PruneResult(ok=False, output=str(exc))
        return prune(
            api,
            discovery,
            namespace,
            refs,
            service=service,
            remembered=self.remembered,
            max_workers=self.max_workers,
        )

    def read(self, refs: Sequence[ObjectRef]) -> dict[ObjectRef, dict[str, Any] | None]:
        api, discovery, namespace = self._connect()
        return kuberead.read(api, discovery, namespace, refs, max_workers=self.max_workers)

    def _hooks(self) -> tuple[KubeApi, Locator]:
        try:
            api, discovery, namespace = self._connect()
        except KubeConfigError as exc:
            raise HookError(str(exc)) from exc
        return api, Locator(discovery, namespace)

    def create_hook(self, obj: dict[str, Any]) -> ObjectRef:
        return kubehooks.create(*self._hooks(), obj)

    def find_hooks(self, like: ObjectRef, labels: dict[str, str]) -> list[LiveHook]:
        return kubehooks.find(*self._hooks(), like, labels)

    def delete_hook(self, ref: ObjectRef) -> None:
        kubehooks.delete(*self._hooks(), ref, timeout=self.timeout)


def _defined_kinds(manifests: Iterable[Manifest]) -> set[tuple[str, str]]:
    """(group, kind) of the custom resources that CRDs among ``manifests`` define."""
    crds = [m.object() for m in manifests if m.phase == CRD]
    return set(crd_scopes(crds))
