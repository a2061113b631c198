"""Drift and self-heal on the test cluster (controllers, scheduler, kwok nodes) with real
workers: a ConfigMap edited and a Deployment deleted by hand are out-of-sync with both
named and notified once; an HPA-like second field manager on ``spec.replicas`` is not
drift; an unreachable cluster is ``unknown``, never drifted; with ``self_heal`` beat's
drift schedule restores both within one drift interval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from syncworker.models import Cluster, Deployment, NotificationTarget, Service
from syncworker.tasks import check_drift
from tests.support.beat import beat_process
from tests.support.e2e import cm, finished, make_repo, sync
from tests.support.gitserver import WorkingCopy
from tests.support.kubecluster import KubeClusterEnv
from tests.support.receiver import Receiver
from tests.support.workers import WorkerProcess
from tests.test_applyers_kubernetes import closed_port_kubeconfig

pytestmark = [pytest.mark.kube, pytest.mark.kube_cluster, pytest.mark.django_db(transaction=True)]


def web(namespace: str) -> str:
    labels = {"app": "web"}
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {  # no replicas: an autoscaler owns them
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
                },
            },
        }
    )


@pytest.fixture
def cluster(kube_cluster: KubeClusterEnv) -> Cluster:
    return Cluster.objects.create(
        name="test",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_cluster.kubeconfig)},
        is_default=True,
    )


@pytest.fixture
def api(kube_cluster: KubeClusterEnv) -> Iterator[k8s.ApiClient]:
    api_client = k8s_config.new_client_from_config(str(kube_cluster.kubeconfig))
    yield api_client
    api_client.close()


def drift_check(service: Service) -> dict[str, Any]:
    result: dict[str, Any] = check_drift.apply_async((service.pk,), ignore_result=False).get(
        timeout=60
    )
    return result


def deployed(git_repo: WorkingCopy, ns: str, **fields: Any) -> Service:
    git_repo.commit(
        {"deploy/app/cm.yaml": cm("settings", ns, "blue"), "deploy/app/web.yaml": web(ns)}
    )
    repo, (service,) = make_repo(git_repo, "app")
    if fields:
        Service.objects.filter(pk=service.pk).update(**fields)
    sync(repo)
    (done,) = finished(service, 1)
    assert done.status == Deployment.Status.SUCCEEDED, done.error
    return service


def test_hand_edits_are_out_of_sync_by_name_and_another_managers_replicas_are_not(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    api: k8s.ApiClient,
    cluster_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = cluster_namespace
    receiver = Receiver()
    try:
        NotificationTarget.objects.create(url=receiver.url)
        service = deployed(git_repo, ns)
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        # What an HPA does: another field manager writes spec.replicas through /scale.
        apps.patch_namespaced_deployment_scale(
            "web", ns, {"spec": {"replicas": 3}}, field_manager="hpa-like"
        )
        assert drift_check(service)["drift"] == []
        service.refresh_from_db()
        assert (service.sync_status, service.drift) == ("synced", [])
        assert service.drift_checked_at is not None

        core.patch_namespaced_config_map("settings", ns, {"data": {"value": "by-hand"}})
        apps.delete_namespaced_deployment("web", ns)
        drift = drift_check(service)["drift"]
        assert [(d["kind"], d["name"], d["state"], d["fields"]) for d in drift] == [
            ("ConfigMap", "settings", "changed", ["data.value"]),
            ("Deployment", "web", "missing", []),
        ]
        service.refresh_from_db()
        assert service.sync_status == "out-of-sync" and service.drift == drift
        assert core.read_namespaced_config_map("settings", ns).data == {"value": "by-hand"}
        assert drift_check(service)["drift"] == drift, "the same drift again"
        # One notification per change of state, not per check.
        deadline = time.monotonic() + 10
        while not receiver.bodies and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        (note,) = [b for b in receiver.bodies if "drift" in b]
        assert note["sync_status"] == "out-of-sync"
        assert f"Deployment {ns}/web missing" in str(note["text"])
        assert service.deployments.count() == 1, "no self-heal unless asked for"
    finally:
        receiver.close()


def test_the_drift_check_keeps_health_current_a_deleted_object_is_missing_until_back(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    api: k8s.ApiClient,
    cluster_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = cluster_namespace
    service = deployed(git_repo, ns)
    service.refresh_from_db()
    assert service.health == "healthy"
    apps = k8s.AppsV1Api(api)

    apps.delete_namespaced_deployment("web", ns)
    drift_check(service)
    service.refresh_from_db()
    assert (service.health, service.health_message) == (
        "missing",
        f"Deployment {ns}/web: not found",
    )

    apps.create_namespaced_deployment(ns, yaml.safe_load(web(ns)))  # put back by hand
    deadline = time.monotonic() + 60
    while True:
        drift_check(service)
        service.refresh_from_db()
        if service.health == "healthy":
            break
        assert service.health in ("missing", "progressing"), service.health_message
        assert time.monotonic() < deadline, service.health_message
        time.sleep(1)
    assert service.health_message == "2 objects healthy"


def test_an_unreachable_cluster_is_unknown_health_never_drift(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    kube_cluster: KubeClusterEnv,
    cluster_namespace: str,
    git_repo: WorkingCopy,
    tmp_path: Path,
) -> None:
    service = deployed(git_repo, cluster_namespace)
    assert drift_check(service)["drift"] == []
    # A server that is gone: nothing listens on its port any more.
    cluster.settings = {"kubeconfig": str(closed_port_kubeconfig(kube_cluster, tmp_path))}
    cluster.save()
    result = drift_check(service)
    assert "unreachable" in result["error"] and result["drift"] == []
    service.refresh_from_db()
    assert (service.health, service.sync_status, service.drift) == ("unknown", "synced", [])


def test_self_heal_restores_hand_edits_within_one_drift_interval(
    celery_worker_process: WorkerProcess,
    worker_database_url: str,
    cluster: Cluster,
    api: k8s.ApiClient,
    cluster_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns, interval = cluster_namespace, 10
    service = deployed(git_repo, ns, self_heal=True, drift_interval=interval)
    service.refresh_from_db()
    service.save()  # the drift schedule follows the row: now at the short interval
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    with beat_process(worker_database_url):
        core.patch_namespaced_config_map("settings", ns, {"data": {"value": "by-hand"}})
        apps.delete_namespaced_deployment("web", ns)
        edited = time.monotonic()
        while True:
            restored = core.read_namespaced_config_map("settings", ns).data == {"value": "blue"}
            try:
                apps.read_namespaced_deployment("web", ns)
            except ApiException as exc:
                assert exc.status == 404
            else:
                if restored:
                    break
            assert time.monotonic() - edited < interval + 15, "not restored"
            time.sleep(0.2)
        took = time.monotonic() - edited
    (healed,) = [d for d in finished(service, 2) if d.trigger == Deployment.Trigger.SELF_HEAL]
    assert healed.status == Deployment.Status.SUCCEEDED, healed.error
    assert healed.rollback_of == service.deployments.get(trigger="webhook")
    # Apply time on a shared 2-core machine comes on top of the interval.
    assert took < interval + 15, f"restored after {took:.1f}s"
