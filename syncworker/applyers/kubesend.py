"""Sending one object for the kubernetes applyer, and what the server's answers mean:
server-side apply, its dry run, create-if-missing for create-only objects, and waiting
for CRDs to be served."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import Discovery, KubeApi, Response
from syncworker.applyers.kubeobjects import Job
from syncworker.kube.labels import FIELD_MANAGER

APPLY_QUERY = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
DRY_RUN_QUERY = {**APPLY_QUERY, "dryRun": "All"}
CREATE_QUERY = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}
CREATE_DRY_RUN_QUERY = {**CREATE_QUERY, "dryRun": "All"}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass
class Checked:
    """A dry run's verdict on one object."""

    ok: bool
    problem: str = ""
    #: The object is already on the cluster (the dry run updated rather than created it).
    exists: bool = False
    #: The dry run failed because this namespace does not exist.
    missing_namespace: str = ""
    #: The object as the apply would leave it (when asked for, and the answer is JSON).
    answer: dict[str, Any] | None = None


def dry_run(api: KubeApi, job: Job, *, answer: bool = False) -> Checked:
    """What the server says to ``job``, changing nothing; with ``answer``, the object the
    apply would make (parsed only then: most answers are not needed)."""
    target, manifest = job.target, job.manifest
    if manifest.create_only:
        response = api.request(
            "POST", target.collection, query=CREATE_DRY_RUN_QUERY, body=manifest.object()
        )
        if already_exists(response):
            return Checked(True, exists=True)
    else:
        response = patch(api, job, DRY_RUN_QUERY)
    if response.status in (200, 201):
        checked = Checked(True, exists=response.status == 200)
        if answer:
            body = _status_body(response)
            checked.answer = body or None
        return checked
    return Checked(
        False,
        f"{target.ref}: {response.message()}",
        missing_namespace=missing_namespace(response, target.ref.namespace),
    )


def patch(api: KubeApi, job: Job, query: dict[str, str]) -> Response:
    """Server-side apply of ``job``; a 409 (a write raced ours) is transient: the next
    attempt sees the new state."""
    response = api.request(
        "PATCH",
        job.target.path,
        query=query,
        body=job.manifest.body,
        content_type=APPLY_CONTENT_TYPE,
    )
    if response.status == 409:
        raise TransientApplyError(f"{job.target.ref}: {response.message()}")
    return response


def create(api: KubeApi, job: Job) -> tuple[bool | None, str]:
    """Create ``job``'s object unless it exists: (True: created, False: it was there,
    None: refused; with the message)."""
    target = job.target
    response = api.request(
        "POST", target.collection, query=CREATE_QUERY, body=job.manifest.object()
    )
    if response.status in (200, 201):
        return True, f"{target.display} created"
    if already_exists(response):
        return False, f"{target.display} exists, left as it is"
    return None, f"{target.ref}: {response.message()}"


def already_exists(response: Response) -> bool:
    return response.status == 409 and _status_body(response).get("reason") == "AlreadyExists"


def _status_body(response: Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def missing_namespace(response: Response, namespace: str) -> str:
    """``namespace`` when the answer is NotFound about it, else ""."""
    if response.status != 404 or not namespace:
        return ""
    details = _status_body(response).get("details")
    if isinstance(details, dict) and details.get("kind") == "namespaces":
        return namespace if details.get("name") == namespace else ""
    return ""


def await_crds(
    api: KubeApi, discovery: Discovery, crds: Sequence[dict[str, Any]], *, timeout: float
) -> list[str]:
    """Wait until the CRDs are Established and discovery lists their kinds; the problems
    of those that are not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pending = {crd["metadata"]["name"]: crd for crd in crds}
    last: dict[str, str] = {}
    while pending:
        for name in list(pending):
            response = api.request("GET", f"{CRD_PATH}/{name}")
            if response.status == 200:
                established, last[name] = _established(response.json())
                if established:
                    del pending[name]
        if pending and time.monotonic() > deadline:
            return [
                f"CustomResourceDefinition {name}: not Established after "
                f"{timeout:.0f}s ({last.get(name) or 'no status'})"
                for name in pending
            ]
        if pending:
            time.sleep(0.1)
    # Discovery is published a moment after the Established condition.
    for crd in crds:
        spec = crd.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind", "")
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            api_version = f"{spec.get('group')}/{version.get('name')}"
            discovery.forget(api_version)
            while discovery.resolve(api_version, kind, refresh=False) is None:
                if time.monotonic() > deadline:
                    return [f"{kind} ({api_version}): not served {timeout:.0f}s "
                            "after its CustomResourceDefinition was Established"]  # fmt: skip
                time.sleep(0.1)
                discovery.forget(api_version)
    return []


def _established(crd: dict[str, Any]) -> tuple[bool, str]:
    for condition in (crd.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Established":
            return condition.get("status") == "True", str(condition.get("message") or "")
    return False, ""
