"""Read live objects back for the kubernetes applyer (health checks and hooks)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from syncworker.applyers.kubeapi import Discovery, KubeApi
from syncworker.applyers.kubeobjects import Locator, run_all
from syncworker.kube.refs import ObjectRef


def read(
    api: KubeApi,
    discovery: Discovery,
    namespace: str,
    refs: Sequence[ObjectRef],
    *,
    max_workers: int,
) -> dict[ObjectRef, dict[str, Any] | None]:
    """Each object as the server has it, ``None`` where it is not found (or its kind is
    no longer served). Keys are the refs as given. Transient errors propagate."""
    locate = Locator(discovery, namespace)
    found: dict[ObjectRef, dict[str, Any] | None] = {}
    targets = []
    for ref in refs:
        target = locate(ref)
        if isinstance(target, str):
            found[ref] = None
        else:
            targets.append((ref, target))

    def get(pair: tuple[ObjectRef, Any]) -> dict[str, Any] | None:
        response = api.request("GET", pair[1].path)
        if response.status == 404:
            return None
        if response.status != 200:
            raise ReadError(f"{pair[0]}: {response.message()}")
        answer = response.json()
        return answer if isinstance(answer, dict) else None

    with ThreadPoolExecutor(max(1, min(max_workers, len(targets) or 1))) as pool:
        for (ref, _), obj in zip(targets, run_all(pool, get, targets), strict=True):
            found[ref] = obj
    return found


class ReadError(Exception):
    """The server refused to show an object (403, …): its health is unknown."""
