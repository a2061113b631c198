"""Reading a rendered bundle back into objects, and the order they are applied in.

The renderer already orders the bundle, but an applyer must not rely on it: a rollback
replays an old bundle and a person may paste one into the admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from syncworker.kube.hooks import is_hook
from syncworker.kube.kinds import (
    BUILTIN_GROUPS,
    CLUSTER_SCOPED_KINDS,
    CRD_GROUP,
    CRD_KIND,
    group_of,
)
from syncworker.kube.labels import CREATE_ONLY_ANNOTATION, SERVICE_LABEL
from syncworker.yamlload import ManifestLoader

NAMESPACE, CRD, CLUSTER_SCOPED, BASICS, REST, CUSTOM = range(6)
PHASE_NAMES = ("namespaces", "crds", "cluster-scoped", "basics", "rest", "custom resources")

# What pods of the same bundle refer to by name: in place before the workloads.
_BASIC_KINDS = frozenset({"ServiceAccount", "Secret", "ConfigMap", "LimitRange", "ResourceQuota"})


def load_objects(yaml_content: str) -> list[dict[str, Any]]:
    """Every object of a multi-document YAML bundle, ``List`` kinds flattened.

    Raises ``ValueError`` naming the document when one is not an object with apiVersion,
    kind and metadata.name.
    """
    objects: list[dict[str, Any]] = []
    try:
        documents = list(yaml.load_all(yaml_content, Loader=ManifestLoader))
    except yaml.YAMLError as exc:
        raise ValueError(f"the bundle is not valid YAML: {exc}") from exc
    for index, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        if (
            isinstance(doc, dict)
            and str(doc.get("kind", "")).endswith("List")
            and isinstance(doc.get("items"), list)
        ):
            items = doc["items"]
        else:
            items = [doc]
        for obj in items:
            _check(obj, index)
            objects.append(obj)
    return objects


def _check(obj: object, index: int) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"document {index} is not a mapping")
    meta = obj.get("metadata")
    if not obj.get("apiVersion") or not obj.get("kind"):
        raise ValueError(f"document {index} has no apiVersion or kind")
    if not isinstance(meta, dict) or not (meta.get("name") or _named_hook(obj)):
        raise ValueError(f"document {index} ({obj['kind']}) has no metadata.name")


def _named_hook(obj: dict[str, Any]) -> bool:
    """A hook may be named by ``generateName`` alone: the server names it on creation."""
    return is_hook(obj) and bool((obj.get("metadata") or {}).get("generateName"))


def is_create_only(obj: dict[str, Any]) -> bool:
    """Created when missing and otherwise left alone (see ``CREATE_ONLY_ANNOTATION``)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return isinstance(annotations, dict) and annotations.get(CREATE_ONLY_ANNOTATION) == "true"


def is_builtin(api_version: str) -> bool:
    return group_of(api_version) in BUILTIN_GROUPS


def phase_of(api_version: str, kind: str) -> int:
    """The dependency phase of a kind: objects of a phase may be applied all at once."""
    if kind == "Namespace" and group_of(api_version) == "":
        return NAMESPACE
    if kind == CRD_KIND and group_of(api_version) == CRD_GROUP:
        return CRD
    if not is_builtin(api_version):
        return CUSTOM
    if kind in CLUSTER_SCOPED_KINDS:
        return CLUSTER_SCOPED
    if kind in _BASIC_KINDS:
        return BASICS
    return REST


def sort_objects(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable sort into dependency order (namespaces, CRDs, ..., custom resources last)."""
    return sorted(objects, key=lambda obj: phase_of(obj["apiVersion"], obj["kind"]))


def phases(objects: Sequence[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
    """The objects grouped by phase, phases in apply order, empty ones left out."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for obj in objects:
        grouped.setdefault(phase_of(obj["apiVersion"], obj["kind"]), []).append(obj)
    return sorted(grouped.items())


def first_service(objects: Iterable[dict[str, Any]]) -> str | None:
    """The first ``simple-gitops.io/service`` label value in the bundle, if any."""
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        value = labels.get(SERVICE_LABEL)
        if isinstance(value, str) and value:
            return value
    return None
