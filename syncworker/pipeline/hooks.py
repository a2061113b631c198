"""Running a deployment's hooks on its cluster: create them, see how they end, delete
them as their policy says, and keep a record of each (``Deployment.hooks``).

The order of the phases lives in ``deploying`` (PreSync before anything is applied, Sync
hooks after the last wave) and ``waiting`` (their wait off the apply queue, PostSync once
everything is healthy, SyncFail when the sync fails). Hooks are never in the inventory
(``render.bundle`` leaves them out of its refs), so they are never pruned and never count
as owned by a service.

Each hook object is created with two labels beside ours: which hook of the service it is
(``HOOK_KEY_LABEL``) and which deployment and phase created it. A redelivered task finds
the object it created before instead of creating a second one; ``BeforeHookCreation``
deletes the objects an earlier deployment created for the same hook.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from syncworker.applyers.base import Applyer, HookError, TransientApplyError
from syncworker.health import DEGRADED, HEALTHY, assess
from syncworker.kube import hooks as vocabulary
from syncworker.kube.hooks import (
    BEFORE_HOOK_CREATION,
    HOOK_DEPLOYMENT_LABEL,
    HOOK_FAILED,
    HOOK_KEY_LABEL,
    HOOK_SUCCEEDED,
)
from syncworker.kube.labels import SERVICE_LABEL
from syncworker.kube.refs import ObjectRef
from syncworker.render.bundle import dump_yaml
from syncworker.yamlload import ManifestLoader

log = logging.getLogger(__name__)

HOOK_PHASE_LABEL = "simple-gitops.io/hook-phase"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
#: A SyncFail hook is created and recorded; nobody waits for it (the sync already failed).
CREATED = "created"


@dataclass(frozen=True)
class Plan:
    """A bundle split: ``yaml`` holds the objects to apply, ``hooks`` the hooks by phase."""

    yaml: str
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, phase: str) -> list[dict[str, Any]]:
        return self.hooks.get(phase, [])


def plan_of(bundle: str) -> Plan:
    """The objects to apply and the hooks of ``bundle``; a bundle without any hook
    annotation comes back as it is (no parsing)."""
    if vocabulary.ARGO_HOOK_ANNOTATION not in bundle and vocabulary.HOOK_ANNOTATION not in bundle:
        return Plan(bundle)
    objects = [doc for doc in yaml.load_all(bundle, Loader=ManifestLoader) if doc is not None]
    plain, by_phase = vocabulary.split_objects(objects)
    return Plan(dump_yaml(plain), by_phase)


def ref_of(record: dict[str, Any]) -> ObjectRef:
    return ObjectRef(record["api_version"], record["kind"], record["namespace"], record["name"])


def describe(record: dict[str, Any]) -> str:
    """``PreSync hook Job shop/db-migrate-x7k2p: failed: BackoffLimitExceeded …``."""
    where = f"{record['namespace']}/" if record["namespace"] else ""
    line = f"{record['phase']} hook {record['kind']} {where}{record['name'] or record['hook']}"
    line += f": {record['result']}"
    if record.get("message"):
        line += f": {record['message']}"
    return line + (" (deleted)" if record.get("deleted") else "")


def start(
    applyer: Applyer, deployment_id: int, phase: str, objects: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Create the hooks of ``phase`` (deleting earlier ones first where the policy says
    so); their records. StartFailed names the hook the cluster refused and holds the
    records of those created before it; transient errors propagate (what was created is
    found again on the next attempt)."""
    records: list[dict[str, Any]] = []
    for obj in objects:
        try:
            records.append(_start_one(applyer, deployment_id, phase, obj))
        except HookError as exc:
            raise StartFailed(str(exc), records) from exc
    return records


class StartFailed(HookError):
    """A hook was refused; ``records``: the hooks of the phase created before it."""

    def __init__(self, message: str, records: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.records = records


def _start_one(
    applyer: Applyer, deployment_id: int, phase: str, obj: dict[str, Any]
) -> dict[str, Any]:
    meta = obj["metadata"]
    key = vocabulary.hook_key(obj)
    service = (meta.get("labels") or {}).get(SERVICE_LABEL, "")
    policies = vocabulary.delete_policies_of(obj)
    record: dict[str, Any] = {
        "phase": phase,
        "api_version": obj["apiVersion"],
        "kind": obj["kind"],
        "namespace": meta.get("namespace") or "",
        "hook": meta.get("name") or f"{meta['generateName']}*",
        "name": "",
        "result": RUNNING if phase != vocabulary.SYNC_FAIL else CREATED,
        "message": "",
        "delete_policies": list(policies),
        "deleted": False,
    }
    mine = {HOOK_DEPLOYMENT_LABEL: str(deployment_id), HOOK_PHASE_LABEL: phase}
    like = ObjectRef.of(obj)
    earlier = applyer.find_hooks(like, {SERVICE_LABEL: service, HOOK_KEY_LABEL: key})
    for found in earlier:
        if all(found.labels.get(k) == v for k, v in mine.items()) and not found.deleting:
            record["name"], record["namespace"] = found.ref.name, found.ref.namespace
            return record  # created by an earlier attempt of this very task
    if BEFORE_HOOK_CREATION in policies:
        for found in earlier:
            applyer.delete_hook(found.ref)
    body = copy.deepcopy(obj)
    body["metadata"]["labels"] = {**(meta.get("labels") or {}), HOOK_KEY_LABEL: key, **mine}
    created = applyer.create_hook(body)
    record["name"], record["namespace"] = created.name, created.namespace
    return record


def observe(applyer: Applyer, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with the result of every running hook read from the cluster."""
    records = copy.deepcopy(records)
    running = [r for r in records if r["result"] == RUNNING]
    if not running:
        return records
    live = applyer.read([ref_of(r) for r in running])
    for record in running:
        record["result"], record["message"] = outcome(live.get(ref_of(record)))
    return records


def outcome(obj: dict[str, Any] | None) -> tuple[str, str]:
    """(running | succeeded | failed, why) of one hook object: a Job by its Complete or
    Failed condition, a Pod by its phase, anything else by its health."""
    if obj is None:
        return FAILED, "not found: deleted before it finished"
    health = assess(obj)
    kind = obj.get("kind")
    if kind == "Job":
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") == "Complete":
                return SUCCEEDED, health.message
            if condition.get("status") == "True" and condition.get("type") == "Failed":
                why = ": ".join(
                    str(condition[k]) for k in ("reason", "message") if condition.get(k)
                )
                return FAILED, why or health.message
        return RUNNING, health.message
    if kind == "Pod":
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Succeeded":
            return SUCCEEDED, "completed"
        if phase == "Failed":
            return FAILED, str((obj.get("status") or {}).get("reason") or "pod failed")
        return RUNNING, health.message
    if health.status == HEALTHY:
        return SUCCEEDED, health.message
    if health.status == DEGRADED:
        return FAILED, health.message
    return RUNNING, health.message


def state(records: Sequence[dict[str, Any]], phase: str) -> str:
    """failed when any hook of ``phase`` failed, running while any runs, else succeeded."""
    results = {r["result"] for r in records if r["phase"] == phase}
    if FAILED in results:
        return FAILED
    return RUNNING if RUNNING in results else SUCCEEDED


def failures(records: Sequence[dict[str, Any]], phase: str | None = None) -> str:
    """The failed (or, past a deadline, unfinished) hooks, one line each."""
    return "\n".join(
        describe(r)
        for r in records
        if r["result"] in (FAILED, RUNNING) and (phase is None or r["phase"] == phase)
    )


def clean_up(applyer: Applyer, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Delete the finished hooks whose policy asks for it (HookSucceeded, HookFailed)."""
    records = copy.deepcopy(records)
    for record in records:
        policies = record["delete_policies"]
        wanted = (record["result"] == SUCCEEDED and HOOK_SUCCEEDED in policies) or (
            record["result"] == FAILED and HOOK_FAILED in policies
        )
        if not wanted or record["deleted"] or not record["name"]:
            continue
        try:
            applyer.delete_hook(ref_of(record))
            record["deleted"] = True
        except (HookError, TransientApplyError) as exc:
            # A hook left behind is deleted before the next one is created.
            log.warning("hook %s not deleted: %s", ref_of(record), exc)
            record["message"] = f"{record['message']}; not deleted: {exc}".lstrip("; ")
    return records


def run_sync_fail(
    applyer: Applyer, deployment_id: int, plan: Plan, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Create the SyncFail hooks of a sync that failed; their records after ``records``.
    Best effort: a SyncFail hook the cluster refuses is recorded, not raised."""
    objects = plan.of(vocabulary.SYNC_FAIL)
    if not objects or not applyer.can_run_hooks:
        return records
    done = list(records)
    for obj in objects:
        try:
            done += start(applyer, deployment_id, vocabulary.SYNC_FAIL, [obj])
        except (HookError, TransientApplyError) as exc:
            meta = obj["metadata"]
            done.append(
                {
                    "phase": vocabulary.SYNC_FAIL,
                    "api_version": obj["apiVersion"],
                    "kind": obj["kind"],
                    "namespace": meta.get("namespace") or "",
                    "hook": meta.get("name") or f"{meta.get('generateName')}*",
                    "name": "",
                    "result": FAILED,
                    "message": f"not created: {exc}",
                    "delete_policies": [],
                    "deleted": False,
                }
            )
    return done


def report(records: Sequence[dict[str, Any]]) -> str:
    """The hook lines of a deployment's output."""
    return "\n".join(describe(r) for r in records)
