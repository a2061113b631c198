"""Where a repository's bundles may reach (Argo CD's project destinations and
cluster-resource allow-list): namespaces by pattern, cluster-scoped objects by kind.

``None`` means unrestricted (the default); an empty list allows nothing. Checked on the
rendered bundle, before anything is applied, and every object outside is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from syncworker.kube import kinds
from syncworker.kube.refs import ObjectRef

DEFAULT_NAMESPACE = "default"  # where an object with no namespace lands


def check_tenancy(
    objects: Sequence[dict[str, Any]],
    *,
    namespaces: Sequence[str] | None,
    cluster_resources: Sequence[str] | None,
) -> list[str]:
    """One problem per object that leaves what the repository may touch."""
    scopes = kinds.crd_scopes(objects)
    problems = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        if kinds.is_namespaced(ref.api_version, ref.kind, scopes):
            namespace = ref.namespace or DEFAULT_NAMESPACE
            if namespaces is not None and not any(fnmatchcase(namespace, p) for p in namespaces):
                allowed = ", ".join(namespaces) or "none"
                problems.append(
                    f"{ref}: namespace {namespace!r} is not allowed (allowed: {allowed})"
                )
        elif cluster_resources is not None and not _kind_allowed(ref, cluster_resources):
            allowed = ", ".join(cluster_resources) or "none"
            problems.append(
                f"{ref}: cluster-scoped {ref.kind} is not allowed (allowed kinds: {allowed})"
            )
    return problems


def _kind_allowed(ref: ObjectRef, allowed: Sequence[str]) -> bool:
    """``ClusterRole``, ``rbac.authorization.k8s.io/ClusterRole`` or ``*``."""
    qualified = f"{ref.group}/{ref.kind}" if ref.group else ref.kind
    return any(entry in ("*", ref.kind, qualified) for entry in allowed)
