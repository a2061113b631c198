"""What the kubernetes applyer works with: objects resolved to API paths, a pool that
sends many requests at once, and the record of what one apply did. Shared by its apply
(``kubernetes``, ``kubesend``) and prune (``kubeprune``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from syncworker.applyers.applied import Key, Manifest, key_of
from syncworker.applyers.kubeapi import Discovery, Resource
from syncworker.kube.kinds import group_of
from syncworker.kube.refs import ObjectRef

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """Where one object lives: ``ref`` with the namespace the server will use."""

    ref: ObjectRef
    resource: Resource

    @property
    def path(self) -> str:
        return self.resource.path(self.ref.namespace, self.ref.name)

    @property
    def collection(self) -> str:
        return self.resource.collection(self.ref.namespace)

    @property
    def display(self) -> str:
        return self.resource.display(self.ref.name)


@dataclass(frozen=True)
class Job:
    """One object to apply: where it goes, what is sent, and its place in the bundle."""

    target: Target
    manifest: Manifest
    index: int

    @property
    def key(self) -> Key:
        return key_of(self.target.ref)

    @property
    def ref(self) -> ObjectRef:
        """The object as the bundle names it (the inventory's name for it)."""
        return self.manifest.ref


class Locator:
    """Resolves refs to API paths; a kind missing from discovery is looked up again once."""

    def __init__(self, discovery: Discovery, namespace: str) -> None:
        self._discovery = discovery
        self._namespace = namespace
        self._seen: dict[tuple[str, str], Resource | None] = {}

    def __call__(self, ref: ObjectRef) -> Target | str:
        key = (ref.api_version, ref.kind)
        if key not in self._seen:
            self._seen[key] = self._discovery.resolve(*key)
        resource = self._seen[key]
        if resource is None:
            return f"{ref}: the server does not serve kind {ref.kind} in {ref.api_version}"
        namespace = (ref.namespace or self._namespace) if resource.namespaced else ""
        return Target(ObjectRef(ref.api_version, ref.kind, namespace, ref.name), resource)


def collection_name(resource: Resource, namespace: str) -> str:
    """``configmaps in shop``, ``widgets.example.com``: a LIST, as a person reads it."""
    group = group_of(resource.api_version)
    where = f" in {namespace}" if namespace else ""
    return f"{resource.plural}{'.' + group if group else ''}{where}"


def run_all(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
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


@dataclass
class Progress:
    """What an apply did so far. Thread-safe: the pool's workers record into it."""

    total: int
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rejected: int = 0
    applied: int = 0
    unchanged: int = 0
    #: Objects of the bundle now on the cluster as wanted (applied or unchanged), by the
    #: bundle's names for them; create-only objects are never among them.
    reached: list[ObjectRef] = field(default_factory=list)
    #: Bundle places of the create-only objects a dry run found already there.
    existing: set[int] = field(default_factory=set)
    #: Live objects by bundle place, of the objects we do not remember applying: their
    #: dry runs are compared with them.
    live: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Bundle places of the objects whose dry run changed nothing: not applied.
    same: set[int] = field(default_factory=set)
    _lines: dict[tuple[int, int], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, job: Job, line: str, *, changed: bool) -> None:
        """``job``'s object is on the cluster as wanted (``changed``: by this apply)."""
        with self._lock:
            self._lines[(job.manifest.phase, job.index)] = line
            if changed:
                self.applied += 1
            else:
                self.unchanged += 1
            if not job.manifest.create_only:
                self.reached.append(job.ref)

    def reject(self, problem: str, count: int = 1) -> None:
        """A problem the server's dry run (or discovery) found, about ``count`` objects."""
        with self._lock:
            self.errors.append(problem)
            self.rejected += count

    def output(self, seconds: float) -> str:
        # Applied and unchanged objects in apply order: phase, then place in the bundle.
        lines = [*self.notes, *(self._lines[key] for key in sorted(self._lines))]
        counts = f"{self.unchanged} unchanged in {seconds:.1f}s"
        if not self.errors:
            return "\n".join([*lines, f"{self.applied} objects applied, {counts}"])
        if self.rejected:
            summary = (
                f"failed: the server's dry run rejected {self.rejected} of {self.total} "
                f"objects; {self.applied} applied, {counts}"
            )
        else:
            summary = f"failed: {self.applied} of {self.total} objects applied, {counts}"
        return "\n".join([*self.errors, *lines, summary])
