"""What a sync would change on the cluster, object by object, changing nothing.

For each object of a bundle the server is asked twice: a GET of the live object, and the
server-side apply as a dry run under our field manager with force (exactly what a sync
sends). Both answers are normalised (server bookkeeping, status and the commit annotation
earlier versions stamped dropped) and compared; what differs is what the apply would
change. Letting the dry run decide is what keeps fields other managers own out of the
diff: a field we do not send (an HPA's ``spec.replicas``) comes back from the dry run as
it is live, so it never differs. A missing object is ``created`` and shown as the bundle
has it (its dry run still validates it); create-only objects are only ever created.

Secret values are masked before any text is made: a value that would change shows as
``(hidden)`` on one side and ``(hidden, changed)`` on the other.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml

from syncworker.applyers import kubesend
from syncworker.applyers.applied import Manifest
from syncworker.applyers.kubeapi import Discovery, KubeApi
from syncworker.applyers.kubeobjects import Job, Locator, run_all
from syncworker.health import Health, assess
from syncworker.kube.kinds import crd_scopes
from syncworker.kube.labels import COMMIT_ANNOTATION
from syncworker.kube.refs import ObjectRef
from syncworker.kube.secrets import MASK

CREATED, CHANGED, UNCHANGED, PRUNED = "created", "changed", "unchanged", "pruned"
CHANGED_MASK = f"{MASK[:-1]}, changed)"
# Written by the server on every write, or not ours to compare.
_METADATA_DROPPED = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
)


@dataclass
class ObjectDiff:
    """What a sync would do to one object: ``action`` is one of created, changed,
    unchanged, pruned; ``fields`` are the dotted paths that differ, ``diff`` a unified
    diff of the normalised YAML (both with Secret values masked)."""

    ref: ObjectRef
    action: str
    fields: list[str] = field(default_factory=list)
    diff: str = ""
    #: The live object's health, from the GET the diff made anyway (None: not read, as
    #: for an object to prune or one of a kind the bundle's CRD brings).
    health: Health | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "api_version": self.ref.api_version,
            "kind": self.ref.kind,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "action": self.action,
            "changed_fields": self.fields,
            "diff": self.diff,
        }


class DiffError(Exception):
    """An object the server will not dry-run (the message names it)."""


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without what the server writes on its own or we stamped per
    commit before (objects applied by earlier versions carry it until their next apply)."""
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in _METADATA_DROPPED:
            meta.pop(key, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(COMMIT_ANNOTATION, None)
            if not annotations:
                meta.pop("annotations")
    return obj


def changed_paths(live: Any, desired: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ (a list that differs is one leaf)."""
    if isinstance(live, dict) and isinstance(desired, dict):
        paths: list[str] = []
        for key in sorted(set(live) | set(desired), key=str):
            if (key in live) != (key in desired):
                paths.append(f"{prefix}{key}")
            elif live[key] != desired[key]:
                paths += changed_paths(live[key], desired[key], f"{prefix}{key}.")
        return paths
    return [prefix[:-1]] if live != desired else []


def compare(ref: ObjectRef, live: dict[str, Any] | None, desired: dict[str, Any]) -> ObjectDiff:
    """The diff of one object: ``live`` as the server has it (None when missing) and
    ``desired`` as the dry-run apply answered (or, for a missing one, as sent)."""
    after = normalise(desired)
    if live is None:
        return ObjectDiff(ref, CREATED, diff=_unified(ref, None, _masked(after, None)))
    before = normalise(live)
    fields = changed_paths(before, after)
    if not fields:
        return ObjectDiff(ref, UNCHANGED)
    shown_before, shown_after = _masked(before, None), _masked(after, before)
    return ObjectDiff(ref, CHANGED, fields, _unified(ref, shown_before, shown_after))


def _masked(obj: dict[str, Any], other: dict[str, Any] | None) -> dict[str, Any]:
    """``obj`` with a Secret's values masked; against ``other`` a changed value says so."""
    if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
        return obj
    obj = copy.deepcopy(obj)
    for part in ("data", "stringData"):
        values = obj.get(part)
        if not isinstance(values, dict):
            continue
        old = (other or {}).get(part) or {}
        obj[part] = {
            key: (CHANGED_MASK if other is not None and old.get(key) != value else MASK)
            for key, value in values.items()
        }
    return obj


def _unified(ref: ObjectRef, before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    def lines(obj: dict[str, Any] | None) -> list[str]:
        if obj is None:
            return []
        return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(True)

    name = str(ref)
    return "".join(
        difflib.unified_diff(
            lines(before),
            lines(after),
            fromfile=f"live/{name}" if before is not None else "/dev/null",
            tofile=f"desired/{name}",
        )
    )


def diff_manifests(
    pool: ThreadPoolExecutor,
    api: KubeApi,
    discovery: Discovery,
    namespace: str,
    manifests: Sequence[Manifest],
) -> list[ObjectDiff]:
    """The diff of every manifest, in bundle order: two requests per object (a GET and a
    dry-run apply) plus discovery. An object of a kind that a CRD of the bundle brings,
    or in a namespace that does not exist yet, is ``created``. DiffError names the
    objects the server rejects."""
    locate = Locator(discovery, namespace)
    brought = set(
        crd_scopes([m.object() for m in manifests if m.ref.kind == "CustomResourceDefinition"])
    )
    results: list[ObjectDiff | None] = [None] * len(manifests)
    jobs: list[Job] = []
    problems: list[str] = []
    for index, manifest in enumerate(manifests):
        target = locate(manifest.ref)
        if not isinstance(target, str):
            jobs.append(Job(target, manifest, index))
        elif (manifest.ref.group, manifest.ref.kind) in brought:
            results[index] = ObjectDiff(
                manifest.ref,
                CREATED,
                diff=_unified(manifest.ref, None, _masked(normalise(manifest.object()), None)),
            )
        else:
            problems.append(target)
    for job, (outcome, problem) in zip(
        jobs, run_all(pool, lambda j: _one(api, j), jobs), strict=True
    ):
        if problem:
            problems.append(problem)
        results[job.index] = outcome
    if problems:
        raise DiffError("\n".join(problems))
    return [r for r in results if r is not None]


def _one(api: KubeApi, job: Job) -> tuple[ObjectDiff | None, str]:
    ref, manifest = job.manifest.ref, job.manifest
    live_response = api.request("GET", job.target.path)
    if live_response.status == 404:
        live = None
    elif live_response.status == 200:
        live = live_response.json()
    else:
        return None, f"{job.target.ref}: {live_response.message()}"
    health = assess(live)
    if manifest.create_only:
        if live is not None:
            return ObjectDiff(ref, UNCHANGED, health=health), ""
        return _with(compare(ref, None, manifest.object()), health), ""
    response = kubesend.patch(api, job, kubesend.DRY_RUN_QUERY)
    if response.status in (200, 201):
        # A missing object shows as Git has it, as Argo CD shows it: its dry run only
        # validated it, and the defaults the server would fill in (a clusterIP, a
        # terminationMessagePath) are no change anybody made.
        desired = response.json() if live is not None else manifest.object()
        return _with(compare(ref, live, desired), health), ""
    if live is None and kubesend.missing_namespace(response, job.target.ref.namespace):
        # A namespace the sync would create first: show the object as we send it.
        return _with(compare(ref, None, manifest.object()), health), ""
    return None, f"{job.target.ref}: {response.message()}"


def _with(diff: ObjectDiff, health: Health) -> ObjectDiff:
    diff.health = health
    return diff
