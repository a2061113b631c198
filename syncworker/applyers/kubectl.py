"""KubectlApplyer: ``kubectl apply --server-side`` with the bundle on stdin.

For clusters where people want kubectl's exact behaviour (plugins, exec credentials of
their own). The stages are the kubernetes applyer's: ``kubectl apply --server-side
--dry-run=server`` of everything that can be validated now (nothing is applied unless it
passes), then the bundle's namespaces and CRDs (awaited until Established), a dry run of
what waited for them, and the rest, one kubectl run per phase. Create-only objects go
through ``kubectl create`` (AlreadyExists is fine). What reached the cluster is read
from kubectl's output, object by object.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncworker.applyers.base import Applyer, ApplyReport, PruneResult, TransientApplyError
from syncworker.applyers.manifests import (
    CRD,
    CUSTOM,
    NAMESPACE,
    is_create_only,
    load_objects,
    phase_of,
    sort_objects,
)
from syncworker.kube.kinds import crd_scopes, group_of, is_namespaced
from syncworker.kube.labels import FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef

ALREADY_EXISTS = "(AlreadyExists)"
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

    def _run(
        self, *args: str, stdin: str | None = None, check_transient: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; a timeout or (with ``check_transient``) an unreachable cluster
        raises TransientApplyError."""
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
        if check_transient and result.returncode != 0 and is_transient(result.stderr):
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
        report = self.apply_bundle(yaml_content)
        return report.ok, report.output

    def apply_bundle(
        self, yaml_content: str, *, held: Collection[ObjectRef] | None = None
    ) -> ApplyReport:
        try:
            objects = sort_objects(load_objects(yaml_content))
        except ValueError as exc:
            return ApplyReport(False, f"invalid bundle: {exc}")
        if not objects:
            return ApplyReport(True, "nothing to apply: the bundle has no objects")
        run = _Run([ObjectRef.of(obj) for obj in objects if is_create_only(obj)])
        try:
            ok = self._apply_staged(objects, run)
        except FileNotFoundError:
            return ApplyReport(False, f"{self.kubectl} not found")
        except TransientApplyError as exc:
            raise TransientApplyError(str(exc), applied=run.reached) from exc
        return ApplyReport(ok, "\n".join(run.lines), run.reached, run.create_only)

    def _apply_staged(self, objects: list[dict[str, Any]], run: _Run) -> bool:
        """The kubernetes applyer's stages (see there), with kubectl: dry-run what can be
        validated now; apply the bundle's namespaces and CRDs; dry-run what waited for
        them; apply the rest, one kubectl run per phase."""
        bundle_namespaces = {o["metadata"]["name"] for o in objects if _phase(o) == NAMESPACE}
        used = {ns for o in objects if (ns := o["metadata"].get("namespace"))}
        existing = self._existing_namespaces(bundle_namespaces | used)
        known = existing | bundle_namespaces
        scopes = crd_scopes(objects)
        missing: dict[str, list[ObjectRef]] = {}
        definitions: list[dict[str, Any]] = []
        now: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        for obj in objects:
            namespace = obj["metadata"].get("namespace") or ""
            if not is_namespaced(obj["apiVersion"], obj["kind"], scopes):
                namespace = ""
            if _phase(obj) in (NAMESPACE, CRD):
                definitions.append(obj)
            elif namespace and namespace not in known:
                missing.setdefault(namespace, []).append(ObjectRef.of(obj))
            elif namespace in bundle_namespaces - existing or _kind(obj) in scopes:
                later.append(obj)
            else:
                now.append(obj)
        for namespace, refs in missing.items():
            needing = ", ".join(map(str, refs))
            run.lines.append(f"namespace '{namespace}' does not exist; needed by {needing}")
        # Create-only namespaces found there need neither a dry run nor a create.
        there = {o["metadata"]["name"] for o in definitions if _phase(o) == NAMESPACE} & existing
        if not self._dry_run(definitions + now, run, there) or missing:
            run.lines.append("failed: the server's dry run rejected the bundle; nothing applied")
            return False
        for phase in (NAMESPACE, CRD):
            if not self._apply_phase([o for o in definitions if _phase(o) == phase], run, there):
                return False
        crds = [obj for obj in definitions if _phase(obj) == CRD]
        if crds and any(_phase(obj) == CUSTOM for obj in objects):
            names = [f"customresourcedefinition/{crd['metadata']['name']}" for crd in crds]
            result = self._run("wait", "--for=condition=Established", "--timeout=60s", *names)
            if result.returncode != 0:
                run.lines.append(result.stderr.strip())
                return False
        if not self._dry_run(later, run, there):
            run.lines.append(
                "failed: the server's dry run rejected the bundle; only its namespaces and "
                "CRDs were applied"
            )
            return False
        rest = sorted(now + later, key=_phase)
        for phase in sorted({_phase(obj) for obj in rest}):
            if not self._apply_phase([o for o in rest if _phase(o) == phase], run, there):
                return False
        return True

    def _existing_namespaces(self, names: set[str]) -> set[str]:
        if not names:
            return set()
        result = self._run("get", "namespaces", *sorted(names), "--ignore-not-found", "-o", "name")
        if result.returncode != 0:  # no right to read namespaces: let the dry run tell
            return set(names)
        return {line.removeprefix("namespace/") for line in result.stdout.split()}

    def _dry_run(self, objects: Sequence[dict[str, Any]], run: _Run, there: set[str]) -> bool:
        """Server-side dry run of ``objects``; every rejection goes to ``run.lines``. A
        create-only object that exists is added to ``there``."""
        ok = True
        for obj in [o for o in objects if is_create_only(o)]:
            if obj["metadata"]["name"] in there:
                continue
            result = self._create(obj, "--dry-run=server")
            if result.returncode != 0 and ALREADY_EXISTS in result.stderr:
                there.add(obj["metadata"]["name"])
            elif result.returncode != 0:
                run.lines.append(result.stderr.strip())
                ok = False
        applied = [o for o in objects if not is_create_only(o)]
        if not applied:
            return ok
        result = self._server_side_apply(applied, "--dry-run=server")
        if result.returncode == 0:
            return ok
        passed = _displays(result.stdout)
        refused = [str(ObjectRef.of(o)) for o in applied if _display(o) not in passed]
        run.lines.append(result.stderr.strip())
        if refused:
            run.lines.append(f"rejected by the server's dry run: {', '.join(refused)}")
        return False

    def _apply_phase(self, objects: Sequence[dict[str, Any]], run: _Run, there: set[str]) -> bool:
        """Apply one phase; every object that reached the cluster is recorded in ``run``."""
        for obj in [o for o in objects if is_create_only(o)]:
            name = obj["metadata"]["name"]
            if name in there:
                run.lines.append(f"{_display(obj)} exists, left as it is")
                continue
            result = self._create(obj)
            if result.returncode != 0 and ALREADY_EXISTS not in result.stderr:
                run.lines.append(result.stderr.strip())
                return False
            run.lines.append(result.stdout.strip() or f"{_display(obj)} exists, left as it is")
        applied = [o for o in objects if not is_create_only(o)]
        if not applied:
            return True
        result = self._server_side_apply(applied, check_transient=False)
        passed = _displays(result.stdout)
        run.reached += [ObjectRef.of(o) for o in applied if _display(o) in passed]
        run.lines += [line for line in (result.stdout.strip(), result.stderr.strip()) if line]
        if result.returncode != 0 and is_transient(result.stderr):
            raise TransientApplyError(f"kubectl apply: {result.stderr.strip()[-2000:]}")
        return result.returncode == 0

    def _server_side_apply(
        self, objects: Sequence[dict[str, Any]], *flags: str, check_transient: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # JSON documents are YAML and keep every value exactly as parsed.
        bundle = "\n---\n".join(json.dumps(obj) for obj in objects)
        return self._run(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
            *flags, "-f", "-", stdin=bundle, check_transient=check_transient,
        )  # fmt: skip

    def _create(self, obj: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
        return self._run(
            "create", f"--field-manager={FIELD_MANAGER}", *flags, "-f", "-", stdin=json.dumps(obj)
        )

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


@dataclass
class _Run:
    """What one apply did: its output, and the objects that reached the cluster."""

    create_only: list[ObjectRef]
    lines: list[str] = field(default_factory=list)
    reached: list[ObjectRef] = field(default_factory=list)


def _phase(obj: dict[str, Any]) -> int:
    return phase_of(obj["apiVersion"], obj["kind"])


def _kind(obj: dict[str, Any]) -> tuple[str, str]:
    return group_of(obj["apiVersion"]), obj["kind"]


def _display(obj: dict[str, Any]) -> str:
    """``deployment.apps/web``: how kubectl names an object in its output."""
    group = group_of(obj["apiVersion"])
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


def _displays(stdout: str) -> set[str]:
    """The objects kubectl says it applied (``configmap/x serverside-applied``)."""
    return {line.split()[0] for line in stdout.splitlines() if line.strip()}


def _resource_type(ref: ObjectRef) -> str:
    """``Kind.version.group``: fully qualified, so a CRD kind cannot shadow a core one."""
    group, _, version = ref.api_version.rpartition("/")
    return f"{ref.kind}.{version}.{group}" if group else ref.kind


def is_transient(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)
