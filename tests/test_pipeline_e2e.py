"""End to end through real processes: a commit pushed to the Git server, a poll task on
a Celery worker process, fetch and apply tasks on the same broker, and the objects
readable in the real kube-apiserver; then a commit that removes an object prunes it."""

from __future__ import annotations

import time

import pytest
import yaml
from kubernetes import client as k8s

from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.tasks import poll_repository
from tests.support.gitserver import WorkingCopy

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def wait_for_deployments(service: Service, count: int, timeout: float = 60) -> list[Deployment]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = list(service.deployments.filter(status__in=Deployment.FINAL_STATES).order_by("pk"))
        if len(done) >= count:
            return done
        time.sleep(0.2)
    states = list(service.deployments.values_list("pk", "status", "error"))
    raise AssertionError(f"deployments of {service.name} did not finish: {states}")


def cm(name: str, namespace: str, value: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"value": value},
        }
    )


def test_a_pushed_commit_is_applied_and_a_removed_object_is_pruned(
    celery_worker_process: object,
    kube_env: object,
    kube_api_client: object,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    Cluster.objects.create(
        name="test",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_env.kubeconfig)},  # type: ignore[attr-defined]
        is_default=True,
    )
    first = git_repo.commit(
        {
            "deploy/app/a.yaml": cm("alpha", kube_namespace, "1"),
            "deploy/app/b.yaml": cm("beta", kube_namespace, "1"),
        }
    )
    repo = Repository.objects.create(key="e2e", provider="git", url=git_repo.url)
    service = Service.objects.create(name="app", repository=repo, k8s_yaml_dir="deploy/app")

    poll_repository.delay(repo.pk, trigger="webhook").get(timeout=60)
    (deployment,) = wait_for_deployments(service, 1)

    assert (deployment.status, deployment.commit_sha) == (Deployment.Status.SUCCEEDED, first)
    core = k8s.CoreV1Api(kube_api_client)
    alpha = core.read_namespaced_config_map("alpha", kube_namespace)
    assert alpha.data == {"value": "1"}
    meta = alpha.metadata
    assert meta is not None and meta.labels and meta.annotations
    assert meta.labels["simple-gitops.io/service"] == "app"
    assert meta.annotations["simple-gitops.io/commit"] == first

    second = git_repo.commit(
        {"deploy/app/a.yaml": cm("alpha", kube_namespace, "2"), "deploy/app/b.yaml": None}
    )
    poll_repository.delay(repo.pk, trigger="webhook").get(timeout=60)
    latest = wait_for_deployments(service, 2)[-1]

    assert (latest.status, latest.commit_sha) == (Deployment.Status.SUCCEEDED, second), latest.error
    assert core.read_namespaced_config_map("alpha", kube_namespace).data == {"value": "2"}
    with pytest.raises(k8s.ApiException) as gone:
        core.read_namespaced_config_map("beta", kube_namespace)
    assert gone.value.status == 404
    assert [o["name"] for o in latest.pruned_objects] == ["beta"]
