"""kstatus' rules for the health of one live object, as a pure function.

A port of ``sigs.k8s.io/cli-utils`` ``pkg/kstatus/status``: ``generic.go`` (deletion,
``observedGeneration`` vs ``generation``, the ``Reconciling`` and ``Stalled`` conditions)
and ``core.go`` (the rules per built-in kind). kstatus' statuses map onto ours:
Current -> healthy, InProgress and Terminating -> progressing, Failed -> degraded.
Two additions of ours: a ``Ready`` condition on a kind with no rule of its own decides
(as Flux and Argo CD read it), and the messages count replicas the way people read them
("1 of 3 replicas available"), with the controller's reason appended where it gave one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

HEALTHY = "healthy"
PROGRESSING = "progressing"
DEGRADED = "degraded"
MISSING = "missing"
UNKNOWN = "unknown"

# How long a pod may stay unschedulable before it counts as failed (kstatus' window).
SCHEDULE_WINDOW = timedelta(seconds=15)
_NO_DEADLINE = 2**31 - 1


@dataclass(frozen=True)
class Health:
    status: str
    message: str = ""

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY


def _progressing(message: str) -> Health:
    return Health(PROGRESSING, message)


def _degraded(message: str) -> Health:
    return Health(DEGRADED, message)


def _int(obj: dict[str, Any], path: str, default: int) -> int:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node if isinstance(node, int) and not isinstance(node, bool) else default


def _str(obj: dict[str, Any], path: str, default: str = "") -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node if isinstance(node, str) else default


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    if not isinstance(conditions, list):
        return []
    return [c for c in conditions if isinstance(c, dict)]


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == type_), None)


def _with_reason(message: str, condition: dict[str, Any]) -> str:
    detail = condition.get("message") or condition.get("reason") or ""
    return f"{message}; {detail}" if detail else message


def _generic(obj: dict[str, Any]) -> Health | None:
    """generic.go: checkGenericProperties."""
    if _str(obj, "metadata.deletionTimestamp"):
        return _progressing("being deleted")
    generation = _int(obj, "metadata.generation", -1)
    observed = _int(obj, "status.observedGeneration", -1)
    if generation != -1 and observed != -1 and observed != generation:
        return _progressing(f"generation {generation} not yet observed (observed {observed})")
    for condition in _conditions(obj):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Reconciling":
            return _progressing(condition.get("message") or "reconciling")
        if condition.get("type") == "Stalled":
            return _degraded(condition.get("message") or "stalled")
    return None


def _deployment(obj: dict[str, Any]) -> Health:
    """core.go: deploymentConditions."""
    # Without progressDeadlineSeconds the controller never sets Progressing.
    progressing = _int(obj, "spec.progressDeadlineSeconds", _NO_DEADLINE) == _NO_DEADLINE
    available = False
    spec = _int(obj, "spec.replicas", 1)
    replicas = _int(obj, "status.replicas", 0)
    updated = _int(obj, "status.updatedReplicas", 0)
    ready = _int(obj, "status.readyReplicas", 0)
    avail = _int(obj, "status.availableReplicas", 0)
    for condition in _conditions(obj):
        if condition.get("type") == "Progressing":
            if condition.get("reason") == "ProgressDeadlineExceeded":
                return _degraded(f"{avail} of {spec} replicas available; ProgressDeadlineExceeded")
            if (
                condition.get("status") == "True"
                and condition.get("reason") == "NewReplicaSetAvailable"
            ):
                progressing = True
        elif condition.get("type") == "Available" and condition.get("status") == "True":
            available = True
    if spec > replicas:
        return _progressing(f"{replicas} of {spec} replicas created")
    if spec > updated:
        return _progressing(f"{updated} of {spec} replicas updated")
    if replicas > spec:
        return _progressing(f"{replicas - spec} old replicas pending termination")
    if updated > avail:
        return _progressing(f"{avail} of {updated} replicas available")
    if spec > ready:
        return _progressing(f"{ready} of {spec} replicas ready")
    if not progressing:
        return _progressing("new ReplicaSet not yet available")
    if not available:
        return _progressing("Deployment not yet Available")
    return Health(HEALTHY, f"{avail} of {spec} replicas available")


def _statefulset(obj: dict[str, Any]) -> Health:
    """core.go: stsConditions (the controller sets no conditions)."""
    if _str(obj, "spec.updateStrategy.type") == "OnDelete":
        return Health(HEALTHY, "OnDelete update strategy: rollout is up to the user")
    spec = _int(obj, "spec.replicas", 1)
    ready = _int(obj, "status.readyReplicas", 0)
    current = _int(obj, "status.currentReplicas", 0)
    updated = _int(obj, "status.updatedReplicas", 0)
    replicas = _int(obj, "status.replicas", 0)
    partition = _int(obj, "spec.updateStrategy.rollingUpdate.partition", -1)
    if spec > replicas:
        return _progressing(f"{replicas} of {spec} replicas created")
    if spec > ready:
        return _progressing(f"{ready} of {spec} replicas ready")
    if replicas > spec:
        return _progressing(f"{replicas - spec} old replicas pending termination")
    if partition != -1:
        if updated < spec - partition:
            return _progressing(f"{updated} of {spec - partition} replicas updated (partition)")
        return Health(HEALTHY, f"partition rollout complete: {updated} updated")
    if spec > current:
        return _progressing(f"{current} of {spec} replicas current")
    if _str(obj, "status.currentRevision") != _str(obj, "status.updateRevision"):
        return _progressing("waiting for the update revision to become current")
    return Health(HEALTHY, f"{replicas} of {spec} replicas ready")


def _daemonset(obj: dict[str, Any]) -> Health:
    """core.go: daemonsetConditions (generation fields must be set)."""
    if _int(obj, "metadata.generation", -1) == -1:
        return _progressing("metadata.generation not set yet")
    if _int(obj, "status.observedGeneration", -1) == -1:
        return _progressing("not yet observed by the DaemonSet controller")
    desired = _int(obj, "status.desiredNumberScheduled", -1)
    if desired == -1:
        return _progressing("status.desiredNumberScheduled not set yet")
    for field, what in (
        ("currentNumberScheduled", "scheduled"),
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
        ("numberReady", "ready"),
    ):
        have = _int(obj, f"status.{field}", 0)
        if desired > have:
            return _progressing(f"{have} of {desired} pods {what}")
    return Health(HEALTHY, f"{desired} of {desired} pods ready")


def _replicaset(obj: dict[str, Any]) -> Health:
    """core.go: replicasetConditions."""
    failure = _condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return _progressing(_with_reason("replica failure", failure))
    spec = _int(obj, "spec.replicas", 1)
    for field, what in (
        ("fullyLabeledReplicas", "labelled"),
        ("availableReplicas", "available"),
        ("readyReplicas", "ready"),
    ):
        have = _int(obj, f"status.{field}", 0)
        if spec > have:
            return _progressing(f"{have} of {spec} replicas {what}")
    replicas = _int(obj, "status.replicas", 0)
    if replicas > spec:
        return _progressing(f"{replicas - spec} old replicas pending termination")
    return Health(HEALTHY, f"{replicas} of {spec} replicas available")


def _job(obj: dict[str, Any]) -> Health:
    """core.go: jobConditions (a running Job counts as current, as in kstatus)."""
    completions = _int(obj, "spec.completions", _int(obj, "spec.parallelism", 1))
    succeeded = _int(obj, "status.succeeded", 0)
    failed = _int(obj, "status.failed", 0)
    for condition in _conditions(obj):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return Health(HEALTHY, f"complete: {succeeded} of {completions} succeeded")
        if condition.get("type") == "Failed":
            return _degraded(_with_reason(f"failed: {failed} failed", condition))
        if condition.get("type") == "Suspended":
            return Health(HEALTHY, "suspended")
    if not _str(obj, "status.startTime"):
        return _progressing("not started")
    active = _int(obj, "status.active", 0)
    return Health(HEALTHY, f"running: {succeeded} succeeded, {active} active, {failed} failed")


def _crash_looping(obj: dict[str, Any]) -> list[str]:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return [
        str(cs.get("name"))
        for cs in statuses
        if isinstance(cs, dict)
        and ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
    ]


def _created(obj: dict[str, Any]) -> datetime | None:
    stamp = _str(obj, "metadata.creationTimestamp")
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        return None


def _pod(obj: dict[str, Any], now: datetime) -> Health:
    """core.go: podConditions."""
    phase = _str(obj, "status.phase")
    if phase == "Succeeded":
        return Health(HEALTHY, "completed")
    if phase == "Failed":
        # kstatus: a finished pod is current, whatever its exit.
        return Health(HEALTHY, "completed, not successfully")
    if phase == "Running":
        ready = _condition(obj, "Ready")
        if ready is not None and ready.get("status") == "True":
            return Health(HEALTHY, "ready")
        looping = _crash_looping(obj)
        if looping:
            return _degraded(f"containers in CrashLoopBackOff: {', '.join(looping)}")
        return _progressing("running, not ready")
    if phase == "Pending":
        scheduled = _condition(obj, "PodScheduled")
        if (
            scheduled is not None
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == "Unschedulable"
        ):
            created = _created(obj)
            if created is not None and now - created < SCHEDULE_WINDOW:
                return _progressing("not scheduled yet")
            return _degraded(_with_reason("Unschedulable", scheduled))
        return _progressing("pending")
    if not phase:
        return _progressing("not yet observed")
    return Health(UNKNOWN, f"unknown phase {phase}")


def _pvc(obj: dict[str, Any]) -> Health:
    """core.go: pvcConditions."""
    phase = _str(obj, "status.phase", "unknown")
    if phase != "Bound":
        return _progressing(f"not bound (phase {phase})")
    return Health(HEALTHY, "bound")


def _service(obj: dict[str, Any]) -> Health:
    """core.go: serviceConditions."""
    if _str(obj, "spec.type", "ClusterIP") == "LoadBalancer" and not _str(obj, "spec.clusterIP"):
        return _progressing("LoadBalancer: no cluster IP assigned yet")
    return Health(HEALTHY, "ready")


def _crd(obj: dict[str, Any]) -> Health:
    """core.go: crdConditions."""
    for condition in _conditions(obj):
        kind, status = condition.get("type"), condition.get("status")
        if kind == "NamesAccepted" and status == "False":
            return _degraded(_with_reason("names not accepted", condition))
        if kind == "Established":
            if status == "False" and condition.get("reason") != "Installing":
                return _degraded(_with_reason("not established", condition))
            if status == "True":
                return Health(HEALTHY, "established")
    return _progressing("installing")


def _ready_condition(obj: dict[str, Any]) -> Health:
    ready = _condition(obj, "Ready")
    if ready is None or ready.get("status") == "True":
        return Health(HEALTHY, "")
    return _progressing(_with_reason("not Ready", ready))


_RULES: dict[str, Callable[[dict[str, Any]], Health]] = {
    "Service": _service,
    "PersistentVolumeClaim": _pvc,
    "apps/StatefulSet": _statefulset,
    "apps/DaemonSet": _daemonset,
    "extensions/DaemonSet": _daemonset,
    "apps/Deployment": _deployment,
    "extensions/Deployment": _deployment,
    "apps/ReplicaSet": _replicaset,
    "extensions/ReplicaSet": _replicaset,
    "batch/Job": _job,
    "apiextensions.k8s.io/CustomResourceDefinition": _crd,
}


def assess(obj: dict[str, Any] | None, *, now: datetime | None = None) -> Health:
    """The health of one live object; ``None`` (not found on the cluster) is missing.

    ``now`` only matters for a Pending pod (the schedule window); it defaults to the
    current time so callers need not pass it.
    """
    if obj is None:
        return Health(MISSING, "not found")
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        return Health(UNKNOWN, "not a Kubernetes object")
    generic = _generic(obj)
    if generic is not None:
        return generic
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    kind = obj["kind"]
    key = f"{group}/{kind}" if group else kind
    if key == "Pod":
        return _pod(obj, now or datetime.now(timezone.utc))
    rule = _RULES.get(key)
    if rule is not None:
        return rule(obj)
    return _ready_condition(obj)
