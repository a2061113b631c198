"""The test cluster (tests/support/kubecluster.py): workloads roll out on kwok nodes, the
built-in controllers act (namespace, garbage collector, Job, Deployment progress, tokens), and
each component runs with its own credentials, not as ``system:masters``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kubecluster import KWOK_NODE_ANNOTATION, KubeClusterEnv
from tests.support.kubeenv import REPO_ROOT

pytestmark = [pytest.mark.kube, pytest.mark.kube_cluster]

IMAGE = "registry.invalid/never-pulled:1"  # kwok runs no container: nothing is pulled


def kubectl(
    env: KubeClusterEnv, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.kubectl_command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def apply(env: KubeClusterEnv, *objects: dict[str, Any]) -> None:
    result = kubectl(env, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects))
    assert result.returncode == 0, result.stderr


def get(env: KubeClusterEnv, *args: str) -> dict[str, Any]:
    result = kubectl(env, "get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


def pods(env: KubeClusterEnv, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get(env, "pods", "-n", namespace, "-l", selector)["items"]
    return items


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.25)


def gone(env: KubeClusterEnv, *args: str) -> bool:
    result = kubectl(env, "get", *args)
    if result.returncode == 0:
        return False
    assert "NotFound" in result.stderr, result.stderr
    return True


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


def deployment(name: str, namespace: str, replicas: int, **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": IMAGE}], **pod_spec},
            },
        },
    }


def test_a_deployment_rolls_out_on_kwok_nodes_and_scaling_it_to_one_removes_two_pods(
    kube_cluster: KubeClusterEnv, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    apply(kube_cluster, deployment("web", ns, 3))
    rollout = kubectl(kube_cluster, "-n", ns, "rollout", "status", "deployment/web",
                      "--timeout=90s")  # fmt: skip
    assert rollout.returncode == 0, rollout.stderr
    assert "successfully rolled out" in rollout.stdout

    running = pods(kube_cluster, ns, "app=web")
    assert len(running) == 3
    for pod in running:
        assert pod["status"]["phase"] == "Running"
        assert condition(pod, "Ready")["status"] == "True"
        assert pod["spec"]["nodeName"] in kube_cluster.node_names
        node = get(kube_cluster, "node", pod["spec"]["nodeName"])
        assert node["metadata"]["annotations"][KWOK_NODE_ANNOTATION] == "fake"
    assert get(kube_cluster, "-n", ns, "deployment/web")["status"]["readyReplicas"] == 3

    scaled = kubectl(kube_cluster, "-n", ns, "scale", "deployment/web", "--replicas=1")
    assert scaled.returncode == 0, scaled.stderr
    wait_for("two of the three pods gone", lambda: len(pods(kube_cluster, ns, "app=web")) == 1)
    (left,) = pods(kube_cluster, ns, "app=web")
    assert left["metadata"]["name"] in {p["metadata"]["name"] for p in running}
    assert left["status"]["phase"] == "Running"
    status = get(kube_cluster, "-n", ns, "deployment/web")["status"]
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)


def test_a_job_completes(kube_cluster: KubeClusterEnv, cluster_namespace: str) -> None:
    ns = cluster_namespace
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": IMAGE}],
                }
            },
        },
    }
    apply(kube_cluster, job)
    done = kubectl(kube_cluster, "-n", ns, "wait", "--for=condition=Complete", "job/migrate",
                   "--timeout=60s")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert get(kube_cluster, "-n", ns, "job/migrate")["status"]["succeeded"] == 1
    (pod,) = pods(kube_cluster, ns, "job-name=migrate")
    assert pod["status"]["phase"] == "Succeeded"


def test_a_deleted_namespace_disappears_with_the_objects_in_it(
    kube_cluster: KubeClusterEnv, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "settings", "namespace": ns}, "data": {"a": "1"}}  # fmt: skip
    apply(kube_cluster, config, deployment("api", ns, 2))
    wait_for("the pods to run", lambda: len(pods(kube_cluster, ns, "app=api")) == 2)
    deleted = kubectl(kube_cluster, "delete", "namespace", ns, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    wait_for(f"namespace {ns} gone", lambda: gone(kube_cluster, "namespace", ns))
    assert not get(kube_cluster, "pods", "-A", "--field-selector", f"metadata.namespace={ns}")[
        "items"
    ]


def test_an_object_whose_owner_is_deleted_is_garbage_collected(
    kube_cluster: KubeClusterEnv, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    apply(kube_cluster, {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "owner", "namespace": ns}})  # fmt: skip
    owner = get(kube_cluster, "-n", ns, "configmap/owner")
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                 "uid": owner["metadata"]["uid"]}  # fmt: skip
    for name in ("dependent", "bystander"):
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if name == "dependent":
            meta["ownerReferences"] = [reference]
        apply(kube_cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})
    deleted = kubectl(kube_cluster, "-n", ns, "delete", "configmap/owner", "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    wait_for("the dependent collected", lambda: gone(kube_cluster, "-n", ns, "configmap/dependent"))
    assert not gone(kube_cluster, "-n", ns, "configmap/bystander")


def test_a_deployment_that_cannot_be_scheduled_exceeds_its_progress_deadline(
    kube_cluster: KubeClusterEnv, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    stuck = deployment("stuck", ns, 1, nodeSelector={"simple-gitops.test/no-such-node": "yes"})
    stuck["spec"]["progressDeadlineSeconds"] = 3
    apply(kube_cluster, stuck)
    rollout = kubectl(kube_cluster, "-n", ns, "rollout", "status", "deployment/stuck",
                      "--timeout=60s")  # fmt: skip
    assert rollout.returncode != 0
    assert "exceeded its progress deadline" in rollout.stderr
    progressing = condition(get(kube_cluster, "-n", ns, "deployment/stuck"), "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    # The scheduler looked and found no node, rather than nothing having looked at the pod.
    (pod,) = pods(kube_cluster, ns, "app=stuck")
    assert pod["status"]["phase"] == "Pending"
    scheduled = condition(pod, "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert "node(s) didn't match Pod's node affinity/selector" in scheduled["message"]


def test_pods_get_service_account_tokens_as_in_a_real_cluster(
    kube_cluster: KubeClusterEnv, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    # The service account controller gives every namespace its "default" account.
    wait_for("the default account", lambda: not gone(kube_cluster, "-n", ns, "sa/default"))
    apply(kube_cluster, deployment("tokened", ns, 1))
    wait_for("the pod", lambda: len(pods(kube_cluster, ns, "app=tokened")) == 1)
    (pod,) = pods(kube_cluster, ns, "app=tokened")
    # The ServiceAccount admission plugin is on: the account and its projected token are set.
    assert pod["spec"]["serviceAccountName"] == "default"
    projected = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(projected) == 1
    sources = projected[0]["projected"]["sources"]
    assert any("serviceAccountToken" in s for s in sources)
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"/var/run/secrets/kubernetes.io/serviceaccount"} <= {m["mountPath"] for m in mounts}

    # The token controller fills a service-account token Secret with a token of the server's
    # key, and that token authenticates as the account.
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": "default-token",
            "namespace": ns,
            "annotations": {"kubernetes.io/service-account.name": "default"},
        },
    }
    apply(kube_cluster, secret)
    wait_for(
        "the token controller",
        lambda: "token" in get(kube_cluster, "-n", ns, "secret/default-token").get("data", {}),
    )
    filled = get(kube_cluster, "-n", ns, "secret/default-token")["data"]
    assert {"token", "ca.crt", "namespace"} <= filled.keys()
    token = base64.b64decode(filled["token"]).decode()
    whoami = kubectl(kube_cluster, "auth", "whoami", "-o", "json", f"--token={token}")
    assert whoami.returncode == 0, whoami.stderr
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{ns}:default"


@pytest.mark.parametrize(
    ("kubeconfig", "username"),
    [
        ("kube-controller-manager.kubeconfig", "system:kube-controller-manager"),
        ("kube-scheduler.kubeconfig", "system:kube-scheduler"),
        ("kwok.kubeconfig", "system:serviceaccount:kube-system:kwok-controller"),
    ],
)
def test_each_component_has_its_own_identity_and_is_not_a_cluster_admin(
    kube_cluster: KubeClusterEnv, kubeconfig: str, username: str
) -> None:
    path = kube_cluster.workdir / kubeconfig
    flag = f"--kubeconfig={path}"
    result = subprocess.run(
        [str(kube_cluster.kubectl), flag, "auth", "whoami", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    user = json.loads(result.stdout)["status"]["userInfo"]
    assert user["username"] == username
    assert "system:masters" not in user.get("groups", [])
    for verb, resource in [("create", "clusterrolebindings"), ("get", "secrets"), ("*", "*")]:
        can = subprocess.run(
            [str(kube_cluster.kubectl), flag, "auth", "can-i", verb, resource, "-A"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        allowed = can.stdout.strip()
        # The controller-manager reads secrets (the token controller); nobody gets everything.
        if (username, verb, resource) == ("system:kube-controller-manager", "get", "secrets"):
            assert allowed == "yes"
        else:
            assert allowed == "no", (verb, resource, can.stdout, can.stderr)


def test_each_controller_acts_with_its_own_service_account(kube_cluster: KubeClusterEnv) -> None:
    accounts = {
        a["metadata"]["name"] for a in get(kube_cluster, "-n", "kube-system", "sa")["items"]
    }
    # kube-controller-manager creates these only with --use-service-account-credentials.
    expected = {"deployment-controller", "replicaset-controller", "job-controller",
                "namespace-controller", "generic-garbage-collector"}  # fmt: skip
    assert expected <= accounts


def test_the_command_line_prints_the_usual_lines_and_a_kill_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """``python -m tests.support.kubeenv --cluster``: the lines of the bare server, a working
    cluster behind them, and no process left once the Python process is killed with -9."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.kubeenv", "--cluster", "--nodes", "1",
         "--workdir", str(tmp_path / "env")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.rstrip("\n").partition(": ")
            lines[key] = value
            if line.startswith("export KUBECONFIG="):
                break
        assert {"server", "kubeconfig", "kubectl", "log", "ready in"} <= lines.keys(), lines
        assert lines["export KUBECONFIG=" + lines["kubeconfig"]] == ""
        nodes = subprocess.run(
            [lines["kubectl"], f"--kubeconfig={lines['kubeconfig']}", "get", "nodes", "-o",
             "jsonpath={.items[*].metadata.name}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert nodes.stdout.split() == ["kwok-node-0"], nodes.stderr
        children = _descendants(proc.pid)
        names = {_command_name(pid) for pid in children}
        assert {"kube-apiserver-", "kube-controller", "kube-scheduler", "kwok"} <= names, names
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up code of it runs
        proc.wait(timeout=10)
    deadline = time.monotonic() + 45
    while (alive := [pid for pid in children if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive, f"still running after the kill: {[_command_name(p) for p in alive]}"


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found += [int(entry.name), *_descendants(int(entry.name))]
    return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
