"""The namespaces a bundle lives in: the service's own, created when missing, and the
others its objects name, which must exist before anything is applied.

The Namespace to create goes first in the applied bundle but is not one of its objects:
it is in no service's inventory, so prune never sees it, and it is annotated
create-only (the applyers create it when missing and leave an existing one alone) and
never-prune, for people and for any later prune logic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncworker.kube.labels import (
    CREATE_ONLY_ANNOTATION,
    CREATED_FOR_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    NEVER_PRUNE,
    PRUNE_ANNOTATION,
)
from syncworker.kube.refs import ObjectRef


def namespace_to_create(
    objects: Iterable[dict[str, Any]], namespace: str, *, service: str, create: bool = True
) -> dict[str, Any] | None:
    """The Namespace to apply (server-side, before the bundle) when the service names a
    ``namespace`` and asks for it to be created; None when the bundle defines it itself."""
    if not namespace or not create:
        return None
    if any(_is_namespace(obj, namespace) for obj in objects):
        return None
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {
                CREATE_ONLY_ANNOTATION: "true",
                CREATED_FOR_ANNOTATION: service,
                PRUNE_ANNOTATION: NEVER_PRUNE,
            },
        },
    }


def foreign_namespaces(
    objects: Iterable[dict[str, Any]], *, own: str
) -> dict[str, list[ObjectRef]]:
    """Namespace -> the objects in it, for every namespace the (mutated) objects use that
    is neither ``own`` nor defined by the bundle: each must exist already."""
    objects = list(objects)
    defined = {obj["metadata"]["name"] for obj in objects if _is_namespace(obj, None)}
    needed: dict[str, list[ObjectRef]] = {}
    for obj in objects:
        namespace = obj["metadata"].get("namespace") or ""
        if namespace and namespace != own and namespace not in defined:
            needed.setdefault(namespace, []).append(ObjectRef.of(obj))
    return dict(sorted(needed.items()))


def _is_namespace(obj: dict[str, Any], name: str | None) -> bool:
    return (
        obj.get("apiVersion") == "v1"
        and obj.get("kind") == "Namespace"
        and (name is None or obj["metadata"]["name"] == name)
    )
