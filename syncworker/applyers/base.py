"""The applyer interface of the seed, plus what prune and the inventory need.

``install() -> (ok, msg)`` prepares dependencies once per worker; ``apply(yaml) ->
(ok, out)`` applies a rendered bundle. The pipeline calls ``apply_bundle(yaml) ->
ApplyReport``, which also says which objects reached the cluster (they go into the
inventory whatever the outcome, so prune can find them later); its default wraps
``apply``. Applyers that can delete also implement ``prune(refs) -> PruneResult``.

A failure the next attempt may not repeat (connection refused, 5xx, 429, timeouts) is
raised as TransientApplyError so the task retries it; anything else is returned as a
failed report (or ``(False, message)``) and fails the deployment at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncworker.applyers.manifests import is_create_only, load_objects
from syncworker.kube.refs import ObjectRef


class TransientApplyError(Exception):
    """The cluster could not be reached or asked us to come back later.

    ``applied`` names what reached the cluster before the error, for the inventory.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        applied: Sequence[ObjectRef] = (),
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.applied = list(applied)


@dataclass
class ApplyReport:
    """What one apply did.

    ``applied``: objects of the bundle that reached the cluster (created or changed, or
    already as wanted), to record in the service's inventory even when ``ok`` is false.
    ``create_only``: objects created only if missing (``CREATE_ONLY_ANNOTATION``); they are
    never recorded, hence never pruned.
    """

    ok: bool
    output: str
    applied: list[ObjectRef] = field(default_factory=list)
    create_only: list[ObjectRef] = field(default_factory=list)

    @classmethod
    def of_all(cls, ok: bool, output: str, objects: Iterable[dict[str, Any]]) -> ApplyReport:
        """A report that every object of the bundle reached its target."""
        applied: list[ObjectRef] = []
        create_only: list[ObjectRef] = []
        for obj in objects:
            (create_only if is_create_only(obj) else applied).append(ObjectRef.of(obj))
        return cls(ok, output, applied, create_only)


class HookError(Exception):
    """The cluster refused to create, list or delete a hook object (the message says
    which and why)."""


@dataclass(frozen=True)
class LiveHook:
    """A hook object found on the cluster by its labels."""

    ref: ObjectRef
    labels: dict[str, str]
    deleting: bool = False


@dataclass
class PruneResult:
    ok: bool
    output: str
    pruned: list[ObjectRef] = field(default_factory=list)


class Applyer(ABC):
    #: Whether ``prune`` deletes objects on the target (the file applyer cannot).
    can_prune: bool = False
    #: Whether ``read`` returns live objects (health needs them; file and nokube cannot).
    can_read: bool = False
    #: Whether hooks can be created, found and deleted (``create_hook`` and friends).
    can_run_hooks: bool = False

    def install(self) -> tuple[bool, str]:
        return True, "nothing to install"

    @abstractmethod
    def apply(self, yaml_content: str) -> tuple[bool, str]:
        """Apply every object of ``yaml_content``; ``out`` says what happened."""

    def apply_bundle(
        self, yaml_content: str, *, held: Collection[ObjectRef] | None = None
    ) -> ApplyReport:
        """``apply``, reporting what reached the cluster. This default cannot know how
        far a failed apply got, so it reports every object of the bundle either way:
        recording an object that never arrived costs prune one "already gone".

        ``held``, when given, is what the service's inventory holds on the cluster: an
        applyer may take an object outside it for new (not worth reading before its dry
        run). Only a hint: an object that is there after all is applied just the same."""
        ok, output = self.apply(yaml_content)
        try:
            objects = load_objects(yaml_content)
        except ValueError:
            return ApplyReport(ok, output)
        return ApplyReport.of_all(ok, output, objects)

    def prepare_bundle(
        self, yaml_content: str, *, held: Collection[ObjectRef] | None = None
    ) -> ApplyReport:
        """What runs before the PreSync hooks: validate the bundle as ``apply_bundle``
        would and create only the namespaces it needs that are missing, so the hooks can
        run in them; nothing else is written. Only when ``can_run_hooks``."""
        raise NotImplementedError(f"{type(self).__name__} cannot run hooks")

    def diff(self, yaml_content: str) -> list[Any]:
        """What applying ``yaml_content`` would change, per object (``kubediff.ObjectDiff``);
        only an applyer that can dry-run on the server can tell."""
        raise NotImplementedError(f"the {type(self).__name__} cannot compute a diff")

    def prune(self, refs: Sequence[ObjectRef], *, service: str) -> PruneResult:
        """Delete these objects if they still carry our labels for ``service``."""
        return PruneResult(ok=True, output="prune not supported by this applyer")

    def read(self, refs: Sequence[ObjectRef]) -> dict[ObjectRef, dict[str, Any] | None]:
        """The live objects, ``None`` for each one not found. Only when ``can_read``."""
        raise NotImplementedError(f"{type(self).__name__} cannot read live objects")

    def create_hook(self, obj: dict[str, Any]) -> ObjectRef:
        """Create ``obj`` (never apply it); the ref of what the server made. HookError
        when refused. Only when ``can_run_hooks``."""
        raise NotImplementedError(f"{type(self).__name__} cannot run hooks")

    def find_hooks(self, like: ObjectRef, labels: dict[str, str]) -> list[LiveHook]:
        """Objects of ``like``'s kind and namespace that carry all of ``labels``."""
        raise NotImplementedError(f"{type(self).__name__} cannot run hooks")

    def delete_hook(self, ref: ObjectRef) -> None:
        """Delete a hook object and wait until it is gone; HookError when refused."""
        raise NotImplementedError(f"{type(self).__name__} cannot run hooks")
