"""The applyer interface of the seed, plus what prune needs.

``install() -> (ok, msg)`` prepares dependencies once per worker; ``apply(yaml) ->
(ok, out)`` applies a rendered bundle. Applyers that can delete also implement
``prune(refs) -> PruneResult``. A failure the next attempt may not repeat (connection
refused, 5xx, 429, timeouts) is raised as TransientApplyError so the task retries it;
anything else is returned as ``(False, message)`` and fails the deployment at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from syncworker.kube.refs import ObjectRef


class TransientApplyError(Exception):
    """The cluster could not be reached or asked us to come back later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class PruneResult:
    ok: bool
    output: str
    pruned: list[ObjectRef] = field(default_factory=list)


class Applyer(ABC):
    #: Whether ``prune`` deletes objects on the target (the file applyer cannot).
    can_prune: bool = False

    def install(self) -> tuple[bool, str]:
        return True, "nothing to install"

    @abstractmethod
    def apply(self, yaml_content: str) -> tuple[bool, str]:
        """Apply every object of ``yaml_content``; ``out`` says what happened."""

    def prune(self, refs: Sequence[ObjectRef], *, service: str) -> PruneResult:
        """Delete these objects if they still carry our labels for ``service``."""
        return PruneResult(ok=True, output="prune not supported by this applyer")
