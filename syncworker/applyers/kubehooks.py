"""Hook objects for the kubernetes applyer: created (a POST, so ``generateName`` works and
each deployment gets a fresh object, as Argo CD does), found by their labels, deleted."""

from __future__ import annotations

import time
from typing import Any

from syncworker.applyers.base import HookError, LiveHook
from syncworker.applyers.kubeapi import KubeApi
from syncworker.applyers.kubeobjects import Locator, Target
from syncworker.applyers.kubesend import CREATE_QUERY
from syncworker.kube.refs import ObjectRef

LIST_METADATA_ACCEPT = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
GONE_POLL_SECONDS = 0.2


def _target(locate: Locator, ref: ObjectRef) -> Target:
    target = locate(ref)
    if isinstance(target, str):
        raise HookError(target)
    return target


def create(api: KubeApi, locate: Locator, obj: dict[str, Any]) -> ObjectRef:
    """Create ``obj``; the ref of the object the server made (its generated name)."""
    ref = ObjectRef.of(obj)
    target = _target(locate, ref)
    response = api.request("POST", target.collection, query=CREATE_QUERY, body=obj)
    if response.status not in (200, 201):
        raise HookError(f"{ref}: {response.message()}")
    meta = response.json().get("metadata") or {}
    return ObjectRef(ref.api_version, ref.kind, meta.get("namespace") or "", meta.get("name", ""))


def find(api: KubeApi, locate: Locator, like: ObjectRef, labels: dict[str, str]) -> list[LiveHook]:
    """Objects of ``like``'s kind and namespace carrying all of ``labels``."""
    target = _target(locate, like)
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    response = api.request(
        "GET",
        target.collection,
        query={"labelSelector": selector},
        accept=LIST_METADATA_ACCEPT,
    )
    if response.status != 200:
        raise HookError(f"listing {target.resource.plural}: {response.message()}")
    found = []
    for item in response.json().get("items") or []:
        meta = item.get("metadata") or {}
        ref = ObjectRef(like.api_version, like.kind, meta.get("namespace") or "", meta["name"])
        found.append(LiveHook(ref, meta.get("labels") or {}, bool(meta.get("deletionTimestamp"))))
    return found


def delete(api: KubeApi, locate: Locator, ref: ObjectRef, *, timeout: float) -> None:
    """Delete ``ref`` (its pods with it) and wait until it is gone, so that a hook of the
    same name can be created right after."""
    target = _target(locate, ref)
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    response = api.request("DELETE", target.path, body=options)
    if response.status not in (200, 202, 404):
        raise HookError(f"deleting {ref}: {response.message()}")
    deadline = time.monotonic() + timeout
    while api.request("GET", target.path).status != 404:
        if time.monotonic() > deadline:
            raise HookError(f"{ref} still there {timeout:g}s after it was deleted")
        time.sleep(GONE_POLL_SECONDS)
