"""How a container gets the application: the seed's stock-image mode, or a built image.

Stock image (``python:*-slim``): the ConfigMap ``gitops-runtime`` carries ``start.sh`` and
the locked ``requirements.txt``; every pod installs them into a venv on an emptyDir, then
the application itself, from ``--source-url`` or from the wheel in the ConfigMap
``gitops-app``, and execs its role's command. A built image (``deploy/Dockerfile``)
already holds all of it: the commands run as they are.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from syncworker.deployrender.locked import REQUIREMENTS
from syncworker.deployrender.objects import Obj, digest, empty_dir, metadata
from syncworker.deployrender.options import RenderOptions

RUNTIME_CONFIGMAP = "gitops-runtime"
APP_CONFIGMAP = "gitops-app"
RUNTIME_DIR = "/etc/gitops/runtime"
APP_DIR = "/etc/gitops/app"
VENV_ROOT = "/opt/gitops"
VENV = f"{VENV_ROOT}/venv"
PIP_CACHE = "/var/cache/pip"
PACKAGE = "simple-gitops"

START_SH = f"""\
#!/bin/sh
# Stock-image start: install the locked dependencies and the application into a venv
# on the pod's emptyDir, then exec the role's command. A container restarted in the
# same pod finds the venv in place and skips the install.
#   start.sh [--collectstatic] COMMAND [ARG...]
set -eu
venv={VENV}
collectstatic=0
if [ "${{1:-}}" = "--collectstatic" ]; then
  collectstatic=1
  shift
fi
if [ "$(cat "$venv/.runtime-digest" 2>/dev/null || true)" != "$GITOPS_RUNTIME_DIGEST" ]; then
  echo "start.sh: installing the runtime into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r {RUNTIME_DIR}/requirements.txt
  if [ -n "${{GITOPS_SOURCE_URL:-}}" ]; then
    "$venv/bin/pip" install --quiet --no-deps "$GITOPS_SOURCE_URL"
  else
    # Only the mounted wheel: a package index must not supply the application.
    "$venv/bin/pip" install --quiet --no-deps --no-index \\
      --find-links {APP_DIR} "$GITOPS_APP_REQUIREMENT"
  fi
  printf '%s\\n' "$GITOPS_RUNTIME_DIGEST" > "$venv/.runtime-digest"
fi
if [ "$collectstatic" = 1 ]; then
  django-admin collectstatic --noinput -v 0
fi
exec "$@"
"""


def is_stock_image(image: str) -> bool:
    """``python:3.11-slim``, ``docker.io/library/python:3.12-slim-bookworm``; not a
    mirror (whose content we cannot know) nor a digest-only reference."""
    reference = image.split("@", 1)[0]
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        return False
    parts = repository.split("/")
    if len(parts) > 1 and parts[0] in {"docker.io", "index.docker.io"}:
        parts = parts[1:]
    return parts in (["python"], ["library", "python"]) and "slim" in tag


@dataclass
class Runtime:
    stock: bool
    objects: list[Obj] = field(default_factory=list)
    env: list[Obj] = field(default_factory=list)
    volumes: list[Obj] = field(default_factory=list)
    mounts: list[Obj] = field(default_factory=list)
    # A pod-template annotation, so that pods restart when what they install changes.
    fingerprint: str = ""

    def command(self, args: list[str], *, collectstatic: bool = False) -> list[str]:
        if not self.stock:
            return args
        flag = ["--collectstatic"] if collectstatic else []
        return ["/bin/sh", f"{RUNTIME_DIR}/start.sh", *flag, *args]


def build_runtime(options: RenderOptions) -> Runtime:
    if not options.stock_image:
        return Runtime(stock=False)
    ns = options.namespace
    runtime_map: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(RUNTIME_CONFIGMAP, ns, "runtime"),
        "data": {"requirements.txt": REQUIREMENTS, "start.sh": START_SH},
    }
    objects = [runtime_map]
    app_digest = ""
    if options.app_wheel is not None:
        name, content = options.app_wheel
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata(APP_CONFIGMAP, ns, "runtime"),
                "binaryData": {name: base64.b64encode(content).decode()},
            }
        )
        app_digest = digest(base64.b64encode(content).decode())
    fingerprint = digest(REQUIREMENTS, START_SH, options.source_url, app_digest, options.version)
    env: list[Obj] = [
        {"name": "PATH", "value": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin"},
        {"name": "GITOPS_RUNTIME_DIGEST", "value": fingerprint},
        {"name": "PIP_DISABLE_PIP_VERSION_CHECK", "value": "1"},
        {"name": "PIP_NO_INPUT", "value": "1"},
    ]
    volumes: list[Obj] = [
        {"name": "runtime", "configMap": {"name": RUNTIME_CONFIGMAP}},
        empty_dir("venv", "1Gi"),
    ]
    mounts: list[Obj] = [
        {"name": "runtime", "mountPath": RUNTIME_DIR, "readOnly": True},
        {"name": "venv", "mountPath": VENV_ROOT},
    ]
    if options.source_url:
        env.append({"name": "GITOPS_SOURCE_URL", "value": options.source_url})
    else:
        env.append({"name": "GITOPS_APP_REQUIREMENT", "value": f"{PACKAGE}=={options.version}"})
        volumes.append({"name": "app", "configMap": {"name": APP_CONFIGMAP}})
        mounts.append({"name": "app", "mountPath": APP_DIR, "readOnly": True})
    if options.pip_cache_claim:
        env.append({"name": "PIP_CACHE_DIR", "value": PIP_CACHE})
        volumes.append(
            {"name": "pip-cache", "persistentVolumeClaim": {"claimName": options.pip_cache_claim}}
        )
        mounts.append({"name": "pip-cache", "mountPath": PIP_CACHE})
    else:
        # Each pod installs once; a cache in the emptyDir would only double its size.
        env.append({"name": "PIP_NO_CACHE_DIR", "value": "1"})
    return Runtime(True, objects, env, volumes, mounts, fingerprint)
