"""KubectlApplyer: ``kubectl apply --server-side`` with the bundle on stdin.

For clusters where people want kubectl's exact behaviour (plugins, exec credentials of
their own). The bundle is re-sorted into dependency order first, and CRDs are applied
and awaited before the rest, because kubectl maps every kind of a file before it applies
the first object.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from syncworker.applyers.base import Applyer, PruneResult, TransientApplyError
from syncworker.applyers.manifests import CRD, CUSTOM, load_objects, phase_of, sort_objects
from syncworker.kube.labels import FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef

# What kubectl prints when the cluster, not the bundle, is the problem.
TRANSIENT_MARKERS = (
    "connection refused",
    "was refused",
    "connection reset by peer",
    "i/o timeout",
    "the server is currently unable",
    "tls handshake timeout",
    "too many requests",
    "etcdserver: request timed out",
)


class KubectlApplyer(Applyer):
    can_prune = True

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        kubectl: str = "kubectl",
        timeout: float = 300.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.kubectl = kubectl
        self.timeout = timeout

    def _command(self, *args: str) -> list[str]:
        command = [self.kubectl]
        if self.kubeconfig:
            command.append(f"--kubeconfig={self.kubeconfig}")
        if self.context:
            command.append(f"--context={self.context}")
        return [*command, *args]

    def _run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl; a timeout or an unreachable cluster raises TransientApplyError."""
        command = self._command(*args)
        try:
            result = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TransientApplyError(f"kubectl {args[0]} timed out after {exc.timeout}s") from exc
        if result.returncode != 0 and is_transient(result.stderr):
            raise TransientApplyError(f"kubectl {args[0]}: {result.stderr.strip()[-2000:]}")
        return result

    def install(self) -> tuple[bool, str]:
        try:
            result = self._run("version", "-o", "json")
        except FileNotFoundError:
            return False, f"{self.kubectl} not found"
        except TransientApplyError as exc:
            return False, str(exc)
        if result.returncode != 0:
            return False, (result.stderr or result.stdout).strip()
        versions = json.loads(result.stdout)
        client = versions.get("clientVersion", {}).get("gitVersion", "?")
        server = versions.get("serverVersion", {}).get("gitVersion", "?")
        return True, f"kubectl {client}, server {server}"

    def apply(self, yaml_content: str) -> tuple[bool, str]:
        try:
            objects = sort_objects(load_objects(yaml_content))
        except ValueError as exc:
            return False, f"invalid bundle: {exc}"
        if not objects:
            return True, "nothing to apply: the bundle has no objects"
        outputs: list[str] = []
        phases = [phase_of(obj["apiVersion"], obj["kind"]) for obj in objects]
        crds = [obj for obj, phase in zip(objects, phases, strict=True) if phase == CRD]
        try:
            if crds and CUSTOM in phases:
                ok, out = self._apply(crds)
                outputs.append(out)
                if not ok:
                    return False, "\n".join(outputs)
                names = [f"customresourcedefinition/{crd['metadata']['name']}" for crd in crds]
                result = self._run("wait", "--for=condition=Established", "--timeout=60s", *names)
                if result.returncode != 0:
                    return False, "\n".join([*outputs, result.stderr.strip()])
                objects = [obj for obj, phase in zip(objects, phases, strict=True) if phase != CRD]
            ok, out = self._apply(objects)
        except FileNotFoundError:
            return False, f"{self.kubectl} not found"
        return ok, "\n".join([*outputs, out])

    def _apply(self, objects: Sequence[dict[str, Any]]) -> tuple[bool, str]:
        # JSON documents are YAML and keep every value exactly as parsed.
        bundle = "\n---\n".join(json.dumps(obj) for obj in objects)
        result = self._run(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
            "-f", "-", stdin=bundle,
        )  # fmt: skip
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def prune(self, refs: Sequence[ObjectRef], *, service: str) -> PruneResult:
        lines: list[str] = []
        pruned: list[ObjectRef] = []
        failed = False
        # Dependents first: custom resources before their CRDs, namespaces last.
        ordered = sorted(refs, key=lambda ref: phase_of(ref.api_version, ref.kind), reverse=True)
        try:
            for ref in ordered:
                status, line = self._prune_one(ref, service)
                lines.append(line)
                if status in ("deleted", "gone"):
                    pruned.append(ref)
                failed = failed or status == "failed"
        except FileNotFoundError:
            return PruneResult(ok=False, output=f"{self.kubectl} not found", pruned=pruned)
        lines.append(f"{len(pruned)} of {len(refs)} objects pruned")
        return PruneResult(ok=not failed, output="\n".join(lines), pruned=pruned)

    def _prune_one(self, ref: ObjectRef, service: str) -> tuple[str, str]:
        """Delete one object if it is ours: ("deleted" | "gone" | "kept" | "failed", line)."""
        kind, name = _resource_type(ref), ref.name
        where = ["-n", ref.namespace] if ref.namespace else []
        result = self._run("get", f"{kind}/{name}", *where, "--ignore-not-found", "-o", "json")
        if result.returncode != 0:
            if "doesn't have a resource type" in result.stderr:
                return "gone", f"{ref} already gone (kind no longer served)"
            return "failed", f"{ref}: {result.stderr.strip()}"
        if not result.stdout.strip():
            return "gone", f"{ref} already gone"
        labels = (json.loads(result.stdout).get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or labels.get(SERVICE_LABEL) != service:
            return "kept", f"{ref} left alone: not labelled as {service}'s"
        # The selectors are checked again by the delete itself: an object relabelled since
        # the get is not deleted.
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{SERVICE_LABEL}={service}"
        result = self._run(
            "delete", kind, *where, "-l", selector, f"--field-selector=metadata.name={name}",
            "--ignore-not-found", "--cascade=background", "--wait=false",
        )  # fmt: skip
        if result.returncode != 0:
            return "failed", f"{ref}: {result.stderr.strip()}"
        if not result.stdout.strip():
            return "kept", f"{ref} left alone: changed while it was being pruned"
        return "deleted", result.stdout.strip()


def _resource_type(ref: ObjectRef) -> str:
    """``Kind.version.group``: fully qualified, so a CRD kind cannot shadow a core one."""
    group, _, version = ref.api_version.rpartition("/")
    return f"{ref.kind}.{version}.{group}" if group else ref.kind


def is_transient(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)
