"""What rendering knows about kinds: which are cluster-scoped, and the order to apply them.

Built-in API groups are listed explicitly rather than matched by suffix: ``*.k8s.io``
groups such as ``gateway.networking.k8s.io`` are served by CRDs and behave like any other
custom resource.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CRD_GROUP = "apiextensions.k8s.io"
CRD_KIND = "CustomResourceDefinition"

BUILTIN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "extensions",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)

# Kinds of the built-in groups that are not namespaced; every other built-in kind is.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterTrustBundle",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "DeviceClass",
        "FlowSchema",
        "IngressClass",
        "IPAddress",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PodSecurityPolicy",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "ResourceSlice",
        "RuntimeClass",
        "ServiceCIDR",
        "StorageClass",
        "StorageVersionMigration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)

WORKLOAD_KINDS = frozenset(
    {
        "CronJob",
        "DaemonSet",
        "Deployment",
        "Job",
        "Pod",
        "ReplicaSet",
        "ReplicationController",
        "StatefulSet",
    }
)

# Apply order: what others refer to comes first. Kinds sharing a rank are ordered by name.
_RANKS = {
    "Namespace": 0,
    "CustomResourceDefinition": 1,
    "ClusterRole": 2,
    "ClusterRoleBinding": 2,
    # 3: every other cluster-scoped kind
    "LimitRange": 4,
    "ResourceQuota": 4,
    "ServiceAccount": 5,
    "Secret": 6,
    "ConfigMap": 7,
    "PersistentVolumeClaim": 8,
    "Role": 8,
    "RoleBinding": 8,
    "Service": 9,
    **dict.fromkeys(WORKLOAD_KINDS, 10),
}
_OTHER_CLUSTER_SCOPED = 3
_OTHER_BUILTIN = 11  # Ingress, HorizontalPodAutoscaler, ...: they refer to workloads
_CUSTOM = 12


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def is_crd(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("kind") == CRD_KIND
        and isinstance(obj.get("apiVersion"), str)
        and group_of(obj["apiVersion"]) == CRD_GROUP
    )


def crd_scopes(objects: Iterable[Any]) -> dict[tuple[str, str], str]:
    """``(group, kind) -> scope`` of the CRDs among ``objects`` (malformed ones skipped)."""
    scopes: dict[tuple[str, str], str] = {}
    for obj in objects:
        if not is_crd(obj) or not isinstance(spec := obj.get("spec"), dict):
            continue
        names = spec.get("names")
        kind = names.get("kind") if isinstance(names, dict) else None
        group, scope = spec.get("group"), spec.get("scope")
        if isinstance(group, str) and isinstance(kind, str) and isinstance(scope, str):
            scopes[(group, kind)] = scope
    return scopes


def is_namespaced(api_version: str, kind: str, scopes: dict[tuple[str, str], str]) -> bool:
    """Custom resources are namespaced unless their CRD in the bundle says otherwise."""
    group = group_of(api_version)
    if group in BUILTIN_GROUPS:
        return kind not in CLUSTER_SCOPED_KINDS
    return scopes.get((group, kind)) != "Cluster"


def apply_rank(api_version: str, kind: str) -> int:
    if group_of(api_version) not in BUILTIN_GROUPS:
        return _CUSTOM
    if kind in _RANKS:
        return _RANKS[kind]
    return _OTHER_CLUSTER_SCOPED if kind in CLUSTER_SCOPED_KINDS else _OTHER_BUILTIN


def apply_order_key(obj: dict[str, Any]) -> tuple[int, str, str, str, str]:
    """A total order over valid objects that does not depend on where they were found."""
    meta = obj["metadata"]
    return (
        apply_rank(obj["apiVersion"], obj["kind"]),
        obj["kind"],
        meta.get("namespace") or "",
        meta.get("name") or meta["generateName"],  # a hook may be named by its prefix
        obj["apiVersion"],
    )


# Where the pod spec of each workload with a pod template is.
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}


def pod_spec_path(obj: dict[str, Any]) -> tuple[str, ...] | None:
    return POD_SPEC_PATHS.get((group_of(obj["apiVersion"]), obj["kind"]))
