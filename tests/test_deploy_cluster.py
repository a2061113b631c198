"""The system's own release, from ``apply-gitops … --dry-run``, on the test cluster: every
workload of it rolls out — the Deployments, the PostgreSQL StatefulSet with its claim, the fetch
DaemonSet on the management node — and the migration Job completes.

kwok runs no containers: images are not pulled and probes are not called, so this proves the
objects are accepted, scheduled, bound and driven by the real controllers, not that the
program in them starts (the other tests run the program itself).
"""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.deployrender import cli
from tests.support.kubecluster import KubeClusterEnv

pytestmark = [pytest.mark.kube, pytest.mark.kube_cluster]

EXAMPLE_CONFIG = (
    Path(__file__).resolve().parent.parent / "deploy" / "example" / "gitops-config.yaml"
)
# The fetch workers' DaemonSet runs only on nodes with this label (nokube's management role).
MANAGEMENT_LABEL = "node-role.nokube.io/management"
ROLLOUT_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


def kubectl(
    env: KubeClusterEnv, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.kubectl_command(*args), input=stdin, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


def render(namespace: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(
        ["--cluster-name", "test-cluster", "--config-file", str(EXAMPLE_CONFIG),
         "--namespace", namespace, "--dry-run"]
    )  # fmt: skip
    assert cli.run(args, out.write, err.write) == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture
def management_node(kube_cluster: KubeClusterEnv) -> Iterator[str]:
    """One kwok node labelled as a management node for the length of a test."""
    node = kube_cluster.node_names[0]
    labelled = kubectl(kube_cluster, "label", "node", node, f"{MANAGEMENT_LABEL}=true")
    assert labelled.returncode == 0, labelled.stderr
    yield node
    kubectl(kube_cluster, "label", "node", node, f"{MANAGEMENT_LABEL}-")


@pytest.fixture
def release(kube_cluster: KubeClusterEnv) -> Iterator[tuple[str, str]]:
    """(namespace, manifests) of a rendered release; removed from the cluster afterwards."""
    namespace = f"gitops-cluster-{uuid.uuid4().hex[:6]}"
    manifests = render(namespace)
    yield namespace, manifests
    kubectl(kube_cluster, "delete", "--wait=false", "--ignore-not-found", "-f", "-",
            stdin=manifests)  # fmt: skip


def test_every_workload_of_the_rendered_release_rolls_out(
    kube_cluster: KubeClusterEnv, management_node: str, release: tuple[str, str]
) -> None:
    namespace, manifests = release
    objects = [d for d in yaml.safe_load_all(manifests) if d]
    workloads = [o for o in objects if o["kind"] in ROLLOUT_KINDS]
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert {o["kind"] for o in workloads} == ROLLOUT_KINDS and jobs

    applied = kubectl(kube_cluster, "apply", "--server-side", "-f", "-", stdin=manifests)
    assert applied.returncode == 0, applied.stderr

    for obj in workloads:
        ref = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
        rollout = kubectl(kube_cluster, "-n", namespace, "rollout", "status", ref,
                          "--timeout=120s")  # fmt: skip
        assert rollout.returncode == 0, f"{ref}: {rollout.stdout}{rollout.stderr}"
    for job in jobs:
        ref = f"job/{job['metadata']['name']}"
        done = kubectl(kube_cluster, "-n", namespace, "wait", "--for=condition=Complete", ref,
                       "--timeout=120s")  # fmt: skip
        assert done.returncode == 0, f"{ref}: {done.stderr}"

    listed = kubectl(kube_cluster, "-n", namespace, "get", "deploy,sts,ds,pvc,pods", "-o", "json")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in json.loads(listed.stdout)["items"]:
        by_kind.setdefault(obj["kind"], []).append(obj)
    for deployment in by_kind["Deployment"]:
        assert deployment["status"]["readyReplicas"] == deployment["spec"]["replicas"]
    # The claims (the web's and the StatefulSet's) were provisioned and bound.
    claims = {c["metadata"]["name"]: c["status"]["phase"] for c in by_kind["PersistentVolumeClaim"]}
    assert claims == {"gitops-artifacts": "Bound", "data-gitops-postgres-0": "Bound"}
    # The DaemonSet runs on the management node only, not on every node.
    (daemonset,) = by_kind["DaemonSet"]
    assert daemonset["status"]["desiredNumberScheduled"] == 1
    fetch_pods = [p for p in by_kind["Pod"] if owner_uid(p) == daemonset["metadata"]["uid"]]
    assert [p["spec"]["nodeName"] for p in fetch_pods] == [management_node]
    # Every pod is on a kwok node; all but the finished migration's are Running.
    for pod in by_kind["Pod"]:
        assert pod["spec"]["nodeName"] in kube_cluster.node_names
        expected = "Succeeded" if "job-name" in pod["metadata"]["labels"] else "Running"
        assert pod["status"]["phase"] == expected, pod["metadata"]["name"]


def owner_uid(obj: dict[str, Any]) -> str:
    refs = obj["metadata"].get("ownerReferences") or [{}]
    return str(refs[0].get("uid", ""))
