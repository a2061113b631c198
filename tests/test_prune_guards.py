"""Prune never deletes what it must not: an empty bundle, an object relabelled by hand,
an object changed between the check and the delete. Against the real kube-apiserver, the
stages called one after another as the workers would."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from syncworker.applyers.kubeapi import KubeApi
from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from tests.support.gitserver import WorkingCopy

pytestmark = [pytest.mark.kube, pytest.mark.django_db]
Status = Deployment.Status


def cm(name: str, namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
        }
    )


def deploy(repo: Repository) -> Deployment:
    (pk,) = poll_repository(repo.pk).deployments
    fetch_and_render(pk)
    apply_deployment(pk)
    return Deployment.objects.get(pk=pk)


@pytest.fixture
def service(kube_env: Any, git_repo: WorkingCopy, kube_namespace: str) -> Service:
    Cluster.objects.create(
        name="kube",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_env.kubeconfig)},
        is_default=True,
    )
    ns = kube_namespace
    git_repo.commit({"app/a.yaml": cm("keep", ns), "app/b.yaml": cm("leaving", ns)})
    repo = Repository.objects.create(key="guards", provider="git", url=git_repo.url)
    # The apply runs in-process here, with no health worker: no wait after it.
    service = Service.objects.create(name="app", repository=repo, k8s_yaml_dir="app", wait=False)
    assert deploy(repo).status == Status.SUCCEEDED
    return service


def live_names(core: k8s.CoreV1Api, namespace: str) -> set[str]:
    return {
        str(i.metadata.name) for i in core.list_namespaced_config_map(namespace).items if i.metadata
    }


@pytest.fixture
def core(kube_api_client: Any) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube_api_client)


def test_removing_every_manifest_fails_and_prunes_nothing(
    service: Service, git_repo: WorkingCopy, core: k8s.CoreV1Api, kube_namespace: str
) -> None:
    git_repo.commit({"app/a.yaml": None, "app/b.yaml": None, "app/README.md": "moved"})

    failed = deploy(service.repository)

    assert (failed.status, failed.reason) == (Status.FAILED, Deployment.Reason.RENDER)
    assert "app: no manifests (.yaml, .yml, .json) at this commit" in failed.error
    assert {"keep", "leaving"} <= live_names(core, kube_namespace)
    assert AppliedObject.objects.filter(service=service).count() == 2


def test_an_inventory_object_relabelled_by_hand_is_left_alone(
    service: Service, git_repo: WorkingCopy, core: k8s.CoreV1Api, kube_namespace: str
) -> None:
    core.patch_namespaced_config_map(
        "leaving", kube_namespace, {"metadata": {"labels": {"simple-gitops.io/service": "other"}}}
    )
    git_repo.commit({"app/b.yaml": None})

    done = deploy(service.repository)

    assert done.status == Status.SUCCEEDED, done.error
    assert "left alone: not labelled as app's" in done.output
    assert done.pruned_objects == []
    assert "leaving" in live_names(core, kube_namespace)


def test_an_object_changed_between_the_check_and_the_delete_is_not_deleted_then(
    service: Service,
    git_repo: WorkingCopy,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git_repo.commit({"app/b.yaml": None})
    (pk,) = poll_repository(service.repository.pk).deployments
    fetch_and_render(pk)
    real_request = KubeApi.request
    raced: list[str] = []

    def racing_writer(self: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
        response = real_request(self, method, path, **kwargs)
        if method == "GET" and path.endswith("/configmaps/leaving") and not raced:
            # Someone writes to the object right after prune read its labels: the real
            # server refuses the delete's uid/resourceVersion preconditions.
            core.patch_namespaced_config_map(
                "leaving", kube_namespace, {"metadata": {"annotations": {"touched": "yes"}}}
            )
            raced.append(path)
        return response

    monkeypatch.setattr(KubeApi, "request", racing_writer)
    first = apply_deployment(pk)

    assert first.transient and "changed while it was being pruned" in first.error
    assert Deployment.objects.get(pk=pk).status == Status.QUEUED
    assert "leaving" in live_names(core, kube_namespace)
    second = apply_deployment(pk)
    assert second.status == Status.SUCCEEDED
    assert "leaving" not in live_names(core, kube_namespace)
