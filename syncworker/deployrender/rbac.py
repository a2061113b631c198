"""ServiceAccounts and the apply worker's permissions.

Only the apply worker talks to the Kubernetes API, so only its ServiceAccount mounts a
token; every other pod runs without one. It may get, list, create, patch, update and
delete the configured resource kinds: enough for server-side apply and for prune, and
nothing else (no RBAC kinds by default, no escalate/bind/impersonate). Cluster-wide by
default; with ``--scope namespaces=...`` one Role and RoleBinding per namespace instead,
and nothing cluster-scoped can be touched.
"""

from __future__ import annotations

from syncworker.deployrender.objects import Obj, metadata
from syncworker.deployrender.options import RenderOptions

APP_SERVICE_ACCOUNT = "gitops"
APPLY_SERVICE_ACCOUNT = "gitops-apply"
APPLY_ROLE = "simple-gitops-apply"
VERBS = ("get", "list", "create", "update", "patch", "delete")

# Built-in resources a Role cannot grant; dropped from the rules in namespace scope.
CLUSTER_SCOPED = frozenset(
    {
        ("", "namespaces"),
        ("", "nodes"),
        ("", "persistentvolumes"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("storage.k8s.io", "storageclasses"),
        ("storage.k8s.io", "csidrivers"),
        ("scheduling.k8s.io", "priorityclasses"),
        ("networking.k8s.io", "ingressclasses"),
        ("node.k8s.io", "runtimeclasses"),
        ("apiregistration.k8s.io", "apiservices"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    }
)


def cluster_role_name(namespace: str) -> str:
    # One per installation: two releases in two namespaces must not share it.
    return f"simple-gitops:{namespace}:apply"


def service_accounts(options: RenderOptions) -> list[Obj]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(name, options.namespace, component),
            "automountServiceAccountToken": automount,
        }
        for name, component, automount in (
            (APP_SERVICE_ACCOUNT, "app", False),
            (APPLY_SERVICE_ACCOUNT, "apply-worker", True),
        )
    ]


def rules(resources: tuple[tuple[str, str], ...], *, namespaced_only: bool) -> list[Obj]:
    by_group: dict[str, set[str]] = {}
    for group, resource in resources:
        if namespaced_only and (group, resource) in CLUSTER_SCOPED:
            continue
        by_group.setdefault(group, set()).add(resource)
    return [
        {"apiGroups": [group], "resources": sorted(names), "verbs": list(VERBS)}
        for group, names in sorted(by_group.items())
    ]


def apply_permissions(options: RenderOptions) -> list[Obj]:
    subject = {
        "kind": "ServiceAccount",
        "name": APPLY_SERVICE_ACCOUNT,
        "namespace": options.namespace,
    }
    if not options.scope_namespaces:
        name = cluster_role_name(options.namespace)
        return [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": metadata(name, None, "apply-worker"),
                "rules": rules(options.rbac_resources, namespaced_only=False),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": metadata(name, None, "apply-worker"),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [subject],
            },
        ]
    objects: list[Obj] = []
    namespaced = rules(options.rbac_resources, namespaced_only=True)
    for target in options.scope_namespaces:
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata(APPLY_ROLE, target, "apply-worker"),
                "rules": namespaced,
            }
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata(APPLY_ROLE, target, "apply-worker"),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": APPLY_ROLE,
                },
                "subjects": [subject],
            }
        )
    return objects
