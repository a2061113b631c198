"""The rendered release against a real kube-apiserver: it validates, applies, re-applies as
a no-op, and the apply worker's ServiceAccount can do its job and nothing more.

There is no kubelet here: pods never run, but every object is validated and stored, RBAC
is enforced, and the ``restricted`` Pod Security admission judges every pod template.
"""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.applyers.kubernetes import KubernetesApplyer
from syncworker.deployrender import cli
from syncworker.kube.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef
from tests.support.kubeenv import KubeTestEnv

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "deploy" / "example" / "gitops-config.yaml"
EXAMPLE_RENDERED = ROOT / "deploy" / "example" / "rendered.yaml"


def kubectl(
    env: KubeTestEnv, *args: str, stdin: str | None = None, as_user: str | None = None
) -> subprocess.CompletedProcess[str]:
    impersonate = [f"--as={as_user}"] if as_user else []
    return subprocess.run(
        env.kubectl_command(*impersonate, *args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def render(namespace: str, *extra: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(
        ["--cluster-name", "test-cluster", "--config-file", str(EXAMPLE_CONFIG),
         "--namespace", namespace, "--dry-run", *extra]
    )  # fmt: skip
    assert cli.run(args, out.write, err.write) == 0, err.getvalue()
    return out.getvalue()


def stored(env: KubeTestEnv, manifests: str) -> dict[str, dict[str, Any]]:
    """Every object of ``manifests`` as the server has it, by kind/namespace/name."""
    result = kubectl(env, "get", "-f", "-", "-o", "json", "--show-managed-fields", stdin=manifests)
    assert result.returncode == 0, result.stderr
    objects = json.loads(result.stdout)["items"]
    return {
        f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o
        for o in objects
    }


def resource_versions(env: KubeTestEnv, manifests: str) -> dict[str, str]:
    return {key: o["metadata"]["resourceVersion"] for key, o in stored(env, manifests).items()}


@dataclass
class Release:
    namespace: str
    manifests: str
    dry_run: subprocess.CompletedProcess[str]
    apply: subprocess.CompletedProcess[str]

    @property
    def apply_worker(self) -> str:
        return f"system:serviceaccount:{self.namespace}:gitops-apply"


def install(env: KubeTestEnv, namespace: str, manifests: str) -> Release:
    """Server-side dry run, then a real server-side apply, as the README says.

    The release's own Namespace is created first: a dry run creates nothing, so the objects
    in it would otherwise be refused as being in a namespace that does not exist.
    """
    namespaces = [d for d in yaml.safe_load_all(manifests) if d and d["kind"] == "Namespace"]
    created = kubectl(env, "apply", "--server-side", "-f", "-",
                      stdin=yaml.safe_dump_all(namespaces))  # fmt: skip
    assert created.returncode == 0, created.stderr
    dry_run = kubectl(env, "apply", "--server-side", "--dry-run=server", "-f", "-",
                      stdin=manifests)  # fmt: skip
    applied = kubectl(env, "apply", "--server-side", "-f", "-", stdin=manifests)
    return Release(namespace, manifests, dry_run, applied)


@pytest.fixture(scope="module")
def example_release(kube_env: KubeTestEnv) -> Release:
    """deploy/example/rendered.yaml, the seed's sample config, in namespace gitops."""
    return install(kube_env, "gitops", EXAMPLE_RENDERED.read_text())


@pytest.fixture(scope="module")
def scoped_release(kube_env: KubeTestEnv) -> Release:
    suffix = uuid.uuid4().hex[:6]
    namespace = f"gitops-scoped-{suffix}"
    manifests = render(namespace, "--scope", f"namespaces=team-a-{suffix}")
    return install(kube_env, namespace, manifests)


def applyer_as(env: KubeTestEnv, namespace: str, account: str, workdir: Path) -> KubernetesApplyer:
    """The applyer the apply worker runs, authenticated with a real token of its
    ServiceAccount (TokenRequest), not by impersonation."""
    token = kubectl(env, "-n", namespace, "create", "token", account, "--duration=10m")
    assert token.returncode == 0, token.stderr
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "t", "cluster": {"server": env.server,
                                                "certificate-authority": str(env.ca_file)}}],
        "users": [{"name": account, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": account}}],
        "current-context": "t",
    }  # fmt: skip
    path = workdir / f"kubeconfig-{namespace}-{account}"
    path.write_text(json.dumps(kubeconfig))
    return KubernetesApplyer(kubeconfig=str(path))


def service_bundle(namespace: str, service: str) -> str:
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SERVICE_LABEL: service}
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"{service}-config", "namespace": namespace, "labels": labels},
         "data": {"app.json": "{}"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": service, "namespace": namespace, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": service}},
                  "template": {"metadata": {"labels": {"app": service}},
                               "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}},
    ]  # fmt: skip
    return yaml.safe_dump_all(objects)


def service_refs(namespace: str, service: str) -> list[ObjectRef]:
    return [
        ObjectRef("v1", "ConfigMap", namespace, f"{service}-config"),
        ObjectRef("apps/v1", "Deployment", namespace, service),
    ]


def can_i(env: KubeTestEnv, user: str, *args: str) -> bool:
    result = kubectl(env, "auth", "can-i", *args, as_user=user)
    assert result.stdout.strip() in {"yes", "no"}, result.stderr
    return result.stdout.strip() == "yes"


def test_the_example_passes_a_server_side_dry_run(example_release: Release) -> None:
    assert example_release.dry_run.returncode == 0, example_release.dry_run.stderr
    assert "PodSecurity" not in example_release.dry_run.stderr


def test_the_example_applies_cleanly_and_meets_the_restricted_pod_security_standard(
    kube_env: KubeTestEnv, example_release: Release
) -> None:
    assert example_release.apply.returncode == 0, example_release.apply.stderr
    # The namespace is labelled warn=restricted: any pod template that would violate the
    # standard makes the API server answer with a warning, which kubectl prints.
    assert "Warning" not in example_release.apply.stderr
    stored = resource_versions(kube_env, example_release.manifests)
    assert len(stored) == example_release.manifests.count("\n---\n")
    assert "DaemonSet/gitops/gitops-fetch-worker" in stored


def test_a_second_apply_changes_nothing(kube_env: KubeTestEnv, example_release: Release) -> None:
    def apply() -> None:
        again = kubectl(kube_env, "apply", "--server-side", "-f", "-",
                        stdin=example_release.manifests)  # fmt: skip
        assert again.returncode == 0, again.stderr

    before = stored(kube_env, example_release.manifests)
    apply()
    after = stored(kube_env, example_release.manifests)
    assert after.keys() == before.keys()
    for key, obj in after.items():
        if obj["kind"] == "PersistentVolumeClaim":
            # The API server rewrites a claim once on its first no-op apply (same content,
            # new resourceVersion; steady from then on): compare what it holds instead.
            for version in (obj, before[key]):
                del version["metadata"]["resourceVersion"]
            assert obj == before[key], key
        else:
            assert (
                obj["metadata"]["resourceVersion"] == before[key]["metadata"]["resourceVersion"]
            ), f"{key} changed on a second apply"
    settled = resource_versions(kube_env, example_release.manifests)
    apply()
    assert resource_versions(kube_env, example_release.manifests) == settled


def test_the_apply_worker_can_apply_and_prune_a_service(
    kube_env: KubeTestEnv, example_release: Release, tmp_path: Path
) -> None:
    target = f"demo-{uuid.uuid4().hex[:6]}"
    worker = example_release.apply_worker
    assert can_i(kube_env, worker, "create", "namespaces")
    assert can_i(kube_env, worker, "patch", "deployments.apps", "-n", target)
    assert can_i(kube_env, worker, "delete", "configmaps", "-n", target)
    applyer = applyer_as(kube_env, "gitops", "gitops-apply", tmp_path)
    try:
        namespace = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": target}})  # fmt: skip
        ok, out = applyer.apply(namespace + "---\n" + service_bundle(target, "shop"))
        assert ok, out
        assert kubectl(kube_env, "-n", target, "get", "deployment/shop").returncode == 0
        ok, out = applyer.apply(service_bundle(target, "shop"))  # again: a patch
        assert ok, out
        result = applyer.prune(service_refs(target, "shop"), service="shop")
        assert result.ok, result.output
        assert sorted(result.pruned) == sorted(service_refs(target, "shop"))
    finally:
        applyer.close()
    gone = kubectl(kube_env, "-n", target, "get", "deployment/shop", "configmap/shop-config")
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_the_apply_worker_cannot_grant_itself_more(
    kube_env: KubeTestEnv, example_release: Release
) -> None:
    worker = example_release.apply_worker
    assert not can_i(kube_env, worker, "create", "clusterrolebindings")
    assert not can_i(kube_env, worker, "create", "rolebindings", "-n", "default")
    assert not can_i(kube_env, worker, "escalate", "clusterroles")
    assert not can_i(kube_env, worker, "impersonate", "users")
    assert not can_i(kube_env, worker, "create", "pods", "-n", "default")
    refused = kubectl(kube_env, "create", "clusterrolebinding", "grab-admin",
                      "--clusterrole=cluster-admin", "--serviceaccount=gitops:gitops-apply",
                      as_user=worker)  # fmt: skip
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    # Only the apply worker holds a token; the other pods' account has no permissions.
    assert not can_i(kube_env, "system:serviceaccount:gitops:gitops", "get", "configmaps", "-A")


def test_a_scoped_apply_worker_works_in_its_namespaces_only(
    kube_env: KubeTestEnv, scoped_release: Release, tmp_path: Path
) -> None:
    assert scoped_release.dry_run.returncode == 0, scoped_release.dry_run.stderr
    assert scoped_release.apply.returncode == 0, scoped_release.apply.stderr
    suffix = scoped_release.namespace.rsplit("-", 1)[1]
    allowed, other = f"team-a-{suffix}", f"team-b-{suffix}"
    assert kubectl(kube_env, "create", "namespace", other).returncode == 0
    worker = scoped_release.apply_worker
    assert can_i(kube_env, worker, "create", "deployments.apps", "-n", allowed)
    assert not can_i(kube_env, worker, "create", "deployments.apps", "-n", other)
    assert not can_i(kube_env, worker, "get", "secrets", "-n", "kube-system")
    assert not can_i(kube_env, worker, "create", "namespaces")
    assert not can_i(kube_env, worker, "create", "clusterrolebindings")

    applyer = applyer_as(kube_env, scoped_release.namespace, "gitops-apply", tmp_path)
    try:
        ok, out = applyer.apply(service_bundle(allowed, "shop"))
        assert ok, out
        ok, out = applyer.apply(service_bundle(other, "shop"))
        assert not ok
        assert "forbidden" in out
        stolen = {"name": "stolen", "namespace": "kube-system"}
        secret = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": stolen})
        ok, out = applyer.apply(secret)
        assert not ok and "forbidden" in out
        result = applyer.prune(service_refs(allowed, "shop"), service="shop")
        assert result.ok, result.output
        assert len(result.pruned) == 2
    finally:
        applyer.close()


def test_apply_gitops_without_dry_run_applies_through_the_kubernetes_applyer(
    kube_env: KubeTestEnv,
) -> None:
    namespace = f"gitops-direct-{uuid.uuid4().hex[:6]}"
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(
        ["--cluster-name", "test-cluster", "--config-file", str(EXAMPLE_CONFIG),
         "--namespace", namespace, "--kubeconfig", str(kube_env.kubeconfig)]
    )  # fmt: skip
    assert cli.run(args, out.write, err.write) == 0, err.getvalue()
    assert "deployment.apps/gitops-web serverside-applied" in out.getvalue()
    manifests = render(namespace)
    assert len(resource_versions(kube_env, manifests)) == manifests.count("\n---\n")
    assert "ghp_your_token_here" not in out.getvalue() + err.getvalue()


def test_the_seeds_plain_kubectl_apply_works_too(kube_env: KubeTestEnv) -> None:
    """``--dry-run | kubectl apply -f -`` as the seed writes it: client-side apply."""
    namespace = f"gitops-plain-{uuid.uuid4().hex[:6]}"
    manifests = render(namespace)
    applied = kubectl(kube_env, "apply", "-f", "-", stdin=manifests)
    assert applied.returncode == 0, applied.stderr
    assert "Warning" not in applied.stderr
    before = resource_versions(kube_env, manifests)
    assert kubectl(kube_env, "apply", "-f", "-", stdin=manifests).returncode == 0
    assert resource_versions(kube_env, manifests) == before
