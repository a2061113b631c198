"""Make validated objects ours: our labels on every object (what prune and people look
for), the service namespace on namespaced objects without one, and the stateless pattern
on pod templates when the service asks for it.

The commit is deliberately not stamped on the objects: it would change every object of a
service on every commit, so that a commit touching one file would write them all. The
deployment row, the inventory rows and the service's last applied commit say which
commit is applied.

The input is never changed; mutating a mutated object again gives the same object.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from syncworker.kube import kinds
from syncworker.kube.labels import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SERVICE_LABEL,
)
from syncworker.render import stateless
from syncworker.render.base import Document, RenderOptions


def mutate(documents: Sequence[Document], options: RenderOptions) -> list[dict[str, Any]]:
    scopes = kinds.crd_scopes(doc.obj for doc in documents)
    return [mutate_object(doc.obj, options, scopes) for doc in documents]


def mutate_object(
    obj: dict[str, Any], options: RenderOptions, scopes: dict[tuple[str, str], str]
) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    meta["labels"] = {
        **(meta.get("labels") or {}),
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        SERVICE_LABEL: options.service,
    }
    if (
        options.namespace
        and not meta.get("namespace")
        and kinds.is_namespaced(obj["apiVersion"], obj["kind"], scopes)
    ):
        meta["namespace"] = options.namespace
    if options.stateless and (path := kinds.pod_spec_path(obj)) is not None:
        pod_spec = obj
        for key in path:
            pod_spec = pod_spec[key]
        stateless.apply_to_pod_spec(pod_spec, options.service)
    return obj
