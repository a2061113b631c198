"""The seed's stateless pattern.

A pod of such a service carries no application: an init container downloads the start
script and the application package from ``$DOWNLOAD_BASE_URL`` into an emptyDir at
``/app``, the main containers run ``/app/init.sh``, and configuration is read from
``/etc/config`` (ConfigMap ``<service>-config``) and ``/etc/secret`` (Secret
``<service>-secret``). The URL itself comes from the ConfigMap ``<service>-gitops``.

Everything is added only where it is missing (volumes and env by name, mounts by path),
so applying the pattern twice gives the same pod as applying it once, and what the
manifest already says wins.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from syncworker.kube import kinds
from syncworker.render.base import Document, RenderOptions

APP_VOLUME = "gitops-app"
CONFIG_VOLUME = "gitops-config"
SECRET_VOLUME = "gitops-secret"  # noqa: S105 (a volume name)
FETCH_CONTAINER = "gitops-fetch"
FETCH_IMAGE = "busybox:1.36"
URL_ENV = "DOWNLOAD_BASE_URL"
URL_KEY = "download_base_url"
START_COMMAND = ("/bin/sh", "/app/init.sh")
PLACE = "(generated for the stateless pattern)"


def gitops_config_map_name(service: str) -> str:
    return f"{service}-gitops"


def config_maps(documents: Sequence[Document], options: RenderOptions) -> list[Document]:
    """The ConfigMap ``<service>-gitops`` with ``download_base_url``: in the service
    namespace, and in any other namespace a workload of the bundle runs in, since a pod
    can only read a ConfigMap of its own namespace."""
    namespaces = {options.namespace}
    for doc in documents:
        obj = doc.obj
        # Not validated yet: look only at what has the expected shape.
        if not (
            isinstance(obj, dict)
            and isinstance(obj.get("apiVersion"), str)
            and isinstance(obj.get("kind"), str)
            and kinds.pod_spec_path(obj) is not None
        ):
            continue
        meta = obj.get("metadata")
        own = meta.get("namespace") if isinstance(meta, dict) else None
        namespaces.add(own if isinstance(own, str) and own else options.namespace)
    url = options.download_base_url.rstrip("/")
    return [Document(PLACE, _config_map(options.service, ns, url)) for ns in sorted(namespaces)]


def _config_map(service: str, namespace: str, url: str) -> dict[str, Any]:
    meta = {"name": gitops_config_map_name(service)}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {URL_KEY: url}}


def apply_to_pod_spec(spec: dict[str, Any], service: str) -> None:
    """Add the pattern to a (validated) pod spec, in place."""
    _add_missing(spec, "volumes", "name", _volumes(service))
    url_env = _url_env(service)
    for container in spec["containers"]:
        if not container.get("command"):
            container["command"] = list(START_COMMAND)
        _add_missing(container, "volumeMounts", "mountPath", _mounts())
        _add_missing(container, "env", "name", [url_env])
    init_containers = spec.get("initContainers") or []
    if not any(c["name"] == FETCH_CONTAINER for c in init_containers):
        # First, so that the application is in place before any other init step.
        init_containers.insert(0, _fetch_container(service))
    for container in init_containers:
        _add_missing(container, "env", "name", [url_env])
        if container["name"] == FETCH_CONTAINER:
            _add_missing(container, "volumeMounts", "mountPath", _mounts()[:1])
    spec["initContainers"] = init_containers


def _add_missing(
    parent: dict[str, Any], field: str, key: str, wanted: Sequence[dict[str, Any]]
) -> None:
    items = parent.get(field) or []
    present = {item.get(key) for item in items}
    # Copies: a shared dict would be dumped as a YAML anchor and alias.
    items.extend(copy.deepcopy(item) for item in wanted if item[key] not in present)
    parent[field] = items


def _volumes(service: str) -> list[dict[str, Any]]:
    return [
        {"name": APP_VOLUME, "emptyDir": {}},
        {"name": CONFIG_VOLUME, "configMap": {"name": f"{service}-config", "optional": True}},
        {"name": SECRET_VOLUME, "secret": {"secretName": f"{service}-secret", "optional": True}},
    ]


def _mounts() -> list[dict[str, Any]]:
    return [
        {"name": APP_VOLUME, "mountPath": "/app"},
        {"name": CONFIG_VOLUME, "mountPath": "/etc/config", "readOnly": True},
        {"name": SECRET_VOLUME, "mountPath": "/etc/secret", "readOnly": True},
    ]


def _url_env(service: str) -> dict[str, Any]:
    ref = {"name": gitops_config_map_name(service), "key": URL_KEY}
    return {"name": URL_ENV, "valueFrom": {"configMapKeyRef": ref}}


def fetch_script(service: str) -> str:
    # ``service`` is a DNS-1123 label, so it needs no shell quoting.
    return (
        f'wget -qO /app/init.sh "${URL_ENV}/scripts/{service}/init.sh"'
        f' && wget -qO- "${URL_ENV}/apps/{service}/app.tar.gz" | tar -xz -C /app'
        " && chmod +x /app/init.sh"
    )


def _fetch_container(service: str) -> dict[str, Any]:
    return {
        "name": FETCH_CONTAINER,
        "image": FETCH_IMAGE,
        "command": ["/bin/sh", "-c", fetch_script(service)],
        "volumeMounts": _mounts()[:1],
    }
