"""Many objects' health rolled into one: the worst wins, the unhealthy are named."""

from __future__ import annotations

from collections.abc import Iterable

from syncworker.health.kstatus import DEGRADED, HEALTHY, MISSING, PROGRESSING, UNKNOWN, Health
from syncworker.kube.refs import ObjectRef

# Worse to the right: a degraded object outweighs a missing one, and so on.
_ORDER = (HEALTHY, PROGRESSING, UNKNOWN, MISSING, DEGRADED)


def worst(statuses: Iterable[str]) -> str:
    """The worst of several health statuses; healthy when there are none."""
    return max(statuses, key=_ORDER.index, default=HEALTHY)


def summarize(assessed: Iterable[tuple[ObjectRef, Health]]) -> Health:
    """One health for a set of objects, naming each one that is not healthy."""
    pairs = list(assessed)
    unhealthy = [(ref, h) for ref, h in pairs if not h.healthy]
    if not unhealthy:
        return Health(HEALTHY, f"{len(pairs)} objects healthy")
    lines = [f"{ref}: {h.message or h.status}" for ref, h in sorted(unhealthy)]
    return Health(worst(h.status for _, h in unhealthy), "\n".join(lines))
