"""Building blocks shared by every manifest: labels, metadata, security contexts, resource
sizes, and the stable YAML output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

Obj = dict[str, Any]

PART_OF = "simple-gitops"
APP_NAME = "simple-gitops"
# Not our MANAGED_BY_VALUE ("simple-gitops"): prune must never treat the system's own
# objects as those of a service it deploys.
MANAGED_BY = "apply-gitops"

# The uid of the Dockerfile's user; in the stock image it has no passwd entry, which
# Python, pip and Celery do not need.
APP_UID = 10001
# Inside our containers /tmp is an emptyDir of the pod's own, not a shared host directory.
TMP_DIR = "/tmp"  # noqa: S108


def selector_labels(component: str, name: str = APP_NAME) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def labels(component: str, name: str = APP_NAME) -> dict[str, str]:
    return {
        **selector_labels(component, name),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def metadata(
    name: str,
    namespace: str | None,
    component: str,
    *,
    app: str = APP_NAME,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = labels(component, app)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def pod_security(uid: int) -> Obj:
    """Pod-level settings that satisfy the ``restricted`` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(*, read_only_root: bool = True) -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Obj:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def empty_dir(name: str, size_limit: str) -> Obj:
    return {"name": name, "emptyDir": {"sizeLimit": size_limit}}


def digest(*parts: Any, length: int = 12) -> str:
    """A short, stable fingerprint of JSON-able values (for names and pod annotations)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings as literal blocks so scripts stay readable."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key, as kubectl and most hand-written YAML do.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def to_yaml(value: Any) -> str:
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def dump_documents(header: Iterable[str], documents: Iterable[Obj]) -> str:
    """``# header`` lines, then every object as its own ``---`` document."""
    lines = [f"# {line}".rstrip() for line in header]
    out = "\n".join(lines) + "\n" if lines else ""
    for document in documents:
        out += "---\n" + to_yaml(document)
    return out
