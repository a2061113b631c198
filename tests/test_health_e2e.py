"""Health after the apply, end to end on the test cluster (controllers, scheduler, kwok
nodes) with real workers: a deployment succeeds only once its objects are healthy, fails
naming what is not, never holds the apply queue while it waits, and is superseded by a
newer commit of its service."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import yaml

from syncworker.models import Cluster, Deployment, Service
from tests.support.e2e import cm, finished, make_repo, sync
from tests.support.gitserver import WorkingCopy
from tests.support.kubecluster import KubeClusterEnv
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True)]
Status = Deployment.Status
IMAGE = "registry.invalid/never-pulled:1"  # kwok runs no container: nothing is pulled
NOWHERE = {"simple-gitops.test/no-such-node": "yes"}


def workload(name: str, namespace: str, replicas: int, **pod_spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "progressDeadlineSeconds": 10,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": IMAGE}], **pod_spec},
                },
            },
        }
    )


@pytest.fixture
def on_cluster(kube_cluster: KubeClusterEnv) -> Cluster:
    return Cluster.objects.create(
        name="cluster",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_cluster.kubeconfig)},
        is_default=True,
    )


def waiting_for_health(service: Service, timeout: float = 60) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = service.deployments.filter(status=Status.APPLYING).exclude(health_deadline=None)
        if found := row.first():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{service.name}: {list(service.deployments.values('status', 'error'))}")


def test_a_deployment_that_rolls_out_succeeds_with_health_healthy(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    cluster_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = cluster_namespace
    git_repo.commit(
        {"deploy/web/app.yaml": workload("api", ns, 2), "deploy/web/cm.yaml": cm("c", ns, "1")}
    )
    repo, (web,) = make_repo(git_repo, "web")
    Service.objects.filter(pk=web.pk).update(health_timeout=60)
    sync(repo)
    (done,) = finished(web, 1, timeout=90)
    web.refresh_from_db()
    assert done.status == Status.SUCCEEDED, done.error
    assert (web.health, web.sync_status) == ("healthy", "synced")
    assert "health: healthy" in done.output


def test_an_unschedulable_deployment_fails_on_health_within_its_timeout_and_holds_no_queue(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    cluster_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = cluster_namespace
    git_repo.commit(
        {
            "deploy/stuck/app.yaml": workload("api", ns, 1, nodeSelector=NOWHERE),
            "deploy/other/cm.yaml": cm("other", ns, "1"),
        }
    )
    repo, (stuck, other) = make_repo(git_repo, "stuck", "other")
    Service.objects.filter(pk=stuck.pk).update(health_timeout=40)
    sync(repo)
    # The other service applies to the same cluster while the stuck one waits.
    (other_done,) = finished(other, 1, timeout=60)
    assert other_done.status == Status.SUCCEEDED, other_done.error
    assert stuck.deployments.get().status == Status.APPLYING
    (done,) = finished(stuck, 1, timeout=90)
    stuck.refresh_from_db()
    assert (done.status, done.reason) == (Status.FAILED, Deployment.Reason.HEALTH)
    assert f"Deployment {ns}/api: 0 of 1 replicas available; ProgressDeadlineExceeded" in done.error
    assert done.started_at and done.finished_at
    assert (done.finished_at - done.started_at).total_seconds() <= 40 + 15
    # Applied, just not healthy: as Git says (Argo CD's Synced and Degraded).
    assert (stuck.health, stuck.sync_status) == ("degraded", "synced")


def test_a_newer_commit_supersedes_a_deployment_waiting_for_health(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    cluster_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = cluster_namespace
    git_repo.commit({"deploy/web/app.yaml": workload("api", ns, 1, nodeSelector=NOWHERE)})
    repo, (web,) = make_repo(git_repo, "web")
    sync(repo)  # health_timeout stays 300 s: only a newer commit can end this wait early
    first = waiting_for_health(web)
    fixed = git_repo.commit({"deploy/web/app.yaml": workload("api", ns, 1)})
    sync(repo)
    old, new = finished(web, 2, timeout=90)
    assert (old.pk, old.status) == (first.pk, Status.SUPERSEDED)
    assert (new.status, new.commit_sha) == (Status.SUCCEEDED, fixed), new.error


def annotated(text: str, key: str, wave: int) -> str:
    obj = yaml.safe_load(text)
    obj["metadata"]["annotations"] = {key: str(wave)}
    return yaml.safe_dump(obj)


def test_waves_apply_in_order_each_after_the_previous_one_is_healthy(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    cluster_namespace: str,
    git_repo: WorkingCopy,
    kube_cluster: KubeClusterEnv,
) -> None:
    ns = cluster_namespace
    argo, ours = "argocd.argoproj.io/sync-wave", "simple-gitops.io/sync-wave"
    git_repo.commit(
        {
            # File names sort against the waves, so only the annotations can order them.
            "deploy/web/a.yaml": annotated(cm("last", ns, "1"), argo, 1),
            "deploy/web/b.yaml": cm("middle", ns, "1"),  # wave 0 by default
            "deploy/web/c.yaml": annotated(workload("first", ns, 2), ours, -1),
        }
    )
    repo, (web,) = make_repo(git_repo, "web")
    Service.objects.filter(pk=web.pk).update(health_timeout=60)
    sync(repo)
    (done,) = finished(web, 1, timeout=120)
    assert done.status == Status.SUCCEEDED, done.error

    def version(*args: str) -> int:
        out = kube_cluster.kubectl_command("-n", ns, "get", *args, "-o", "json")
        return int(
            json.loads(subprocess.run(out, capture_output=True, check=True).stdout)["metadata"][
                "resourceVersion"
            ]
        )

    # The Deployment's last write is the controller marking it available; the wave after
    # it was created later still, and the next wave after that.
    first = version("deployment/first")
    assert first < version("configmap/middle") < version("configmap/last")
    assert "wave -1: 1 objects healthy" in done.output
