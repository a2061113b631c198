"""Prune for the kubernetes applyer: delete objects that left Git, dependents first, and
only those that still carry our labels for the service."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from syncworker.applyers.applied import AppliedObjects, key_of
from syncworker.applyers.base import PruneResult, TransientApplyError
from syncworker.applyers.kubeapi import Discovery, KubeApi, KubeConfigError
from syncworker.applyers.kubeobjects import Locator, Target, run_all
from syncworker.applyers.manifests import phase_of
from syncworker.kube.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef

# Metadata only: prune needs labels, uid and resourceVersion, not a whole ConfigMap.
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


def prune(
    api: KubeApi,
    discovery: Discovery,
    namespace: str,
    refs: Sequence[ObjectRef],
    *,
    service: str,
    remembered: AppliedObjects,
    max_workers: int,
) -> PruneResult:
    lines: list[str] = []
    pruned: list[ObjectRef] = []
    failed = False
    try:
        locate = Locator(discovery, namespace)
        by_phase: dict[int, list[ObjectRef]] = {}
        for ref in refs:
            by_phase.setdefault(phase_of(ref.api_version, ref.kind), []).append(ref)
        with ThreadPoolExecutor(max_workers, thread_name_prefix="kube-prune") as pool:
            for _, batch in sorted(by_phase.items(), reverse=True):
                targets: list[tuple[ObjectRef, Target]] = []
                for ref in batch:
                    target = locate(ref)
                    # Whatever prune decides, what we last applied no longer stands.
                    remembered.forget(key_of(ref if isinstance(target, str) else target.ref))
                    if isinstance(target, str):  # its kind is gone, and the object with it
                        lines.append(f"{ref} already gone (kind no longer served)")
                        pruned.append(ref)
                    else:
                        targets.append((ref, target))
                outcomes = run_all(pool, lambda t: _prune_one(api, t[1], service), targets)
                for (ref, _), (status, line) in zip(targets, outcomes, strict=True):
                    lines.append(line)
                    if status in ("deleted", "gone"):  # named as the inventory names it
                        pruned.append(ref)
                    failed = failed or status == "failed"
    except KubeConfigError as exc:
        return PruneResult(ok=False, output="\n".join([str(exc), *lines]), pruned=pruned)
    lines.append(f"{len(pruned)} of {len(refs)} objects pruned")
    return PruneResult(ok=not failed, output="\n".join(lines), pruned=pruned)


def _prune_one(api: KubeApi, target: Target, service: str) -> tuple[str, str]:
    """Delete one object if it is ours: ("deleted" | "gone" | "kept" | "failed", line)."""
    response = api.request("GET", target.path, accept=METADATA_ACCEPT)
    if response.status == 404:
        return "gone", f"{target.display} already gone"
    if response.status != 200:
        return "failed", f"{target.ref}: {response.message()}"
    meta = response.json().get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or labels.get(SERVICE_LABEL) != service:
        return "kept", f"{target.display} left alone: not labelled as {service}'s"
    # The preconditions make sure we delete the very object whose labels we just read.
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
    }
    response = api.request("DELETE", target.path, body=options)
    if response.status in (200, 202):
        return "deleted", f"{target.display} deleted"
    if response.status == 404:
        return "gone", f"{target.display} already gone"
    if response.status == 409:
        raise TransientApplyError(f"{target.ref} changed while it was being pruned")
    return "failed", f"{target.ref}: {response.message()}"
