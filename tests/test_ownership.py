"""Who owns an object: a service never takes another service's object, and adopts one
that nobody manages. Against the real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from tests.support.gitserver import WorkingCopy

pytestmark = [pytest.mark.kube, pytest.mark.django_db]
Status = Deployment.Status


def cm(name: str, namespace: str, value: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"v": value},
        }
    )


def run(deployment_ids: list[int]) -> dict[str, Deployment]:
    for pk in deployment_ids:
        fetch_and_render(pk)
    for pk in deployment_ids:
        apply_deployment(pk)
    return {d.service.name: d for d in Deployment.objects.filter(pk__in=deployment_ids)}


@pytest.fixture
def repo(kube_env: Any, git_repo: WorkingCopy) -> Repository:
    Cluster.objects.create(
        name="kube",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_env.kubeconfig)},
        is_default=True,
    )
    repo = Repository.objects.create(key="own", provider="git", url=git_repo.url)
    for name in ("a", "b"):
        Service.objects.create(name=name, repository=repo, k8s_yaml_dir=name, wait=False)
    return repo


@pytest.fixture
def core(kube_api_client: Any) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube_api_client)


def test_a_service_declaring_another_services_object_fails_before_touching_it(
    repo: Repository, git_repo: WorkingCopy, core: k8s.CoreV1Api, kube_namespace: str
) -> None:
    ns = kube_namespace
    git_repo.commit({"a/cm.yaml": cm("same", ns, "from-a"), "b/own.yaml": cm("b-own", ns, "1")})
    assert {d.status for d in run(poll_repository(repo.pk).deployments).values()} == {"succeeded"}
    git_repo.commit({"b/cm.yaml": cm("same", ns, "from-b")})

    b = run(poll_repository(repo.pk).deployments)["b"]

    assert (b.status, b.reason) == (Status.FAILED, Deployment.Reason.CONFLICT)
    assert f"ConfigMap {ns}/same is owned by service a" in b.error
    assert b.output == "", "the applyer never ran"
    live = core.read_namespaced_config_map("same", ns)
    assert live.data == {"v": "from-a"}
    assert live.metadata and (live.metadata.labels or {})["simple-gitops.io/service"] == "a"
    owners = AppliedObject.objects.filter(name="same").values_list("service__name", flat=True)
    assert list(owners) == ["a"]


def test_an_object_nobody_manages_is_adopted_and_pruned_when_it_leaves_git(
    repo: Repository, git_repo: WorkingCopy, core: k8s.CoreV1Api, kube_namespace: str
) -> None:
    ns = kube_namespace
    core.create_namespaced_config_map(
        ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="by-hand"), data={"v": "hand"})
    )
    git_repo.commit({"a/cm.yaml": cm("by-hand", ns, "git"), "a/keep.yaml": cm("k", ns, "1")})

    a = run(poll_repository(repo.pk).deployments)["a"]

    assert a.status == Status.SUCCEEDED, a.error
    live = core.read_namespaced_config_map("by-hand", ns)
    assert live.data == {"v": "git"}
    labels = (live.metadata.labels if live.metadata else None) or {}
    assert labels["app.kubernetes.io/managed-by"] == "simple-gitops"
    assert AppliedObject.objects.filter(service__name="a", name="by-hand").exists()

    git_repo.commit({"a/cm.yaml": None})
    assert run(poll_repository(repo.pk).deployments)["a"].status == Status.SUCCEEDED
    names = {str(i.metadata.name) for i in core.list_namespaced_config_map(ns).items if i.metadata}
    assert "by-hand" not in names and "k" in names
