"""Resource hooks, as Argo CD defines them: which objects are hooks, of which sync phases,
and when they are deleted.

``argocd.argoproj.io/hook`` (or our ``simple-gitops.io/hook``) names the phases, comma
separated: ``PreSync``, ``Sync``, ``PostSync``, ``SyncFail``; ``Skip`` means the object is
never applied. ``argocd.argoproj.io/hook-delete-policy`` (or ours) names when a hook object
goes: ``HookSucceeded``, ``HookFailed``, ``BeforeHookCreation`` (the default when none is
given). Our annotation wins over Argo CD's when an object carries both, as for waves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

ARGO_HOOK_ANNOTATION = "argocd.argoproj.io/hook"
HOOK_ANNOTATION = "simple-gitops.io/hook"
ARGO_DELETE_POLICY_ANNOTATION = "argocd.argoproj.io/hook-delete-policy"
DELETE_POLICY_ANNOTATION = "simple-gitops.io/hook-delete-policy"

PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL, SKIP = "PreSync", "Sync", "PostSync", "SyncFail", "Skip"
PHASES = (PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL)
HOOK_SUCCEEDED, HOOK_FAILED, BEFORE_HOOK_CREATION = (
    "HookSucceeded",
    "HookFailed",
    "BeforeHookCreation",
)
DELETE_POLICIES = (HOOK_SUCCEEDED, HOOK_FAILED, BEFORE_HOOK_CREATION)

# Put on each hook object when it is created (never in the bundle): which hook of the
# service it is (a digest of kind, namespace and name or generateName, a valid label
# value), and which deployment created it, so a redelivered task finds it again.
HOOK_KEY_LABEL = "simple-gitops.io/hook-key"
HOOK_DEPLOYMENT_LABEL = "simple-gitops.io/hook-deployment"


def _annotation(obj: dict[str, Any], *keys: str) -> tuple[str, str] | None:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict):
        return None
    for key in keys:
        value = annotations.get(key)
        if value is not None:
            return key, str(value)
    return None


def _names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def phases_of(obj: dict[str, Any]) -> tuple[str, ...]:
    """The hook phases of ``obj`` (empty: not a hook; ``(SKIP,)``: never applied);
    ValueError naming the annotation for a value Argo CD would not run."""
    found = _annotation(obj, HOOK_ANNOTATION, ARGO_HOOK_ANNOTATION)
    if found is None:
        return ()
    key, value = found
    phases = _names(value)
    unknown = [p for p in phases if p not in (*PHASES, SKIP)]
    if unknown or not phases:
        raise ValueError(
            f"metadata.annotations[{key}]: {value!r} is not a hook phase "
            f"(one or more of {', '.join(PHASES)}, comma separated; or {SKIP})"
        )
    if SKIP in phases and len(phases) > 1:
        raise ValueError(f"metadata.annotations[{key}]: {SKIP} cannot be combined with phases")
    return tuple(p for p in PHASES if p in phases) or (SKIP,)


def delete_policies_of(obj: dict[str, Any]) -> tuple[str, ...]:
    """When the hook object is deleted; ``BeforeHookCreation`` unless told otherwise."""
    found = _annotation(obj, DELETE_POLICY_ANNOTATION, ARGO_DELETE_POLICY_ANNOTATION)
    if found is None:
        return (BEFORE_HOOK_CREATION,)
    key, value = found
    policies = _names(value)
    unknown = [p for p in policies if p not in DELETE_POLICIES]
    if unknown or not policies:
        raise ValueError(
            f"metadata.annotations[{key}]: {value!r} is not a hook delete policy "
            f"(one or more of {', '.join(DELETE_POLICIES)}, comma separated)"
        )
    return tuple(p for p in DELETE_POLICIES if p in policies)


def is_hook(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` carries a hook annotation at all (valid or not)."""
    return _annotation(obj, HOOK_ANNOTATION, ARGO_HOOK_ANNOTATION) is not None


def hook_key(obj: dict[str, Any]) -> str:
    """The same hook across deployments: kind, namespace and name (or generateName)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or f"{meta.get('generateName', '')}*"
    identity = "/".join(
        [obj["apiVersion"].rpartition("/")[0], obj["kind"], meta.get("namespace") or "", name]
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def split_objects(
    objects: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The objects to apply, and the hooks by phase (an object of two phases is in both);
    ``Skip`` objects are in neither. Render already refused bad hook annotations."""
    plain: list[dict[str, Any]] = []
    hooks: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        try:
            phases = phases_of(obj)
        except ValueError:
            phases = ()
        if not phases:
            plain.append(obj)
        for phase in phases:
            if phase != SKIP:
                hooks.setdefault(phase, []).append(obj)
    return plain, hooks
