"""What the apply worker may do: get, list, create, update, patch and delete the given
resource kinds, enough for server-side apply and for prune, and nothing else (no RBAC
kinds by default, never escalate, bind or impersonate). manifests/apply-role.yaml binds
the rules, cluster-wide or, with ``--scope namespaces=...``, in each of those namespaces.
"""

from __future__ import annotations

from typing import Any

Resources = tuple[tuple[str, str], ...]  # (API group, resource)

# RBAC kinds are left out on purpose (see deploy/README.md): add them with
# --add-resources if services ship Roles.
DEFAULT_RESOURCES: Resources = (
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("", "namespaces"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "networkpolicies"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
)
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


def rules(resources: Resources, *, namespaced_only: bool) -> list[dict[str, Any]]:
    by_group: dict[str, set[str]] = {}
    for group, resource in resources:
        if namespaced_only and (group, resource) in CLUSTER_SCOPED:
            continue
        by_group.setdefault(group, set()).add(resource)
    return [
        {"apiGroups": [group], "resources": sorted(names), "verbs": list(VERBS)}
        for group, names in sorted(by_group.items())
    ]
