"""A new commit writes only the objects it changes, on the real kube-apiserver.

The service is Kubernetes' guestbook example (frontend and redis-master, a Deployment and
a Service each, one object per file) scaled up to 30 copies: 120 objects in 120 files,
rendered as the fetch stage renders them. Every write to an object bumps its
resourceVersion, so comparing resourceVersions before and after an apply counts exactly
the objects the apply wrote. Stamping anything per commit on the objects (the commit
annotation of earlier versions) would write all 120 on every commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from syncworker.applyers.kubeapi import KubeApi
from syncworker.applyers.kubernetes import KubernetesApplyer
from syncworker.kube.labels import COMMIT_ANNOTATION
from syncworker.render import RenderOptions, render_bundle
from syncworker.sources.base import SourceFile
from tests.support.kubeenv import KubeTestEnv
from tests.support.repo_files import EXAMPLES

GUESTBOOK = EXAMPLES / "kubernetes-examples" / "guestbook"
FILES = ("frontend-deployment", "frontend-service", "redis-master-deployment",
         "redis-master-service")  # fmt: skip
COPIES = 30
CHANGED_FILE = "deploy/guestbook/guestbook-07/frontend-deployment.yaml"
LISTS = ("/apis/apps/v1/namespaces/{}/deployments", "/api/v1/namespaces/{}/services")


def guestbook_files() -> dict[str, str]:
    """The 120 files of the scaled-up guestbook: copy ``n`` names its objects ``-n``."""
    files: dict[str, str] = {}
    for n in range(COPIES):
        for name in FILES:
            obj = yaml.safe_load((GUESTBOOK / f"{name}.yaml").read_text())
            obj["metadata"]["name"] += f"-{n:02d}"
            path = f"deploy/guestbook/guestbook-{n:02d}/{name}.yaml"
            files[path] = yaml.safe_dump(obj, sort_keys=False)
    return files


def bundle(files: dict[str, str], commit: str, namespace: str) -> str:
    sources = [SourceFile(path, text.encode()) for path, text in sorted(files.items())]
    options = RenderOptions(
        service="guestbook", base_dir="deploy/guestbook", commit=commit, namespace=namespace
    )
    return render_bundle(sources, options).yaml


def live(api_client: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """kind/name -> the object, of every Deployment and Service in ``namespace``."""
    found: dict[str, dict[str, Any]] = {}
    for path in LISTS:
        method, url, headers, _, _ = api_client.param_serialize(
            "GET", path.format(namespace), auth_settings=["BearerToken"]
        )
        response = api_client.call_api(method, url, headers)
        response.read()
        assert response.status == 200, response.data
        listing = json.loads(response.data or b"{}")
        kind = listing["kind"].removesuffix("List")
        for item in listing["items"]:
            found[f"{kind}/{item['metadata']['name']}"] = item
    return found


def versions(api_client: client.ApiClient, namespace: str) -> dict[str, str]:
    return {
        key: obj["metadata"]["resourceVersion"] for key, obj in live(api_client, namespace).items()
    }


def written(before: dict[str, str], after: dict[str, str]) -> list[str]:
    assert sorted(before) == sorted(after), "the same objects"
    return sorted(key for key in after if after[key] != before[key])


@pytest.fixture
def applied(
    kube_env: KubeTestEnv, kube_namespace: str, kube_api_client: client.ApiClient
) -> Iterator[tuple[KubernetesApplyer, dict[str, str]]]:
    """The guestbook applied at a first commit; the applyer and the files of that commit."""
    files = guestbook_files()
    applyer = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))
    ok, output = applyer.apply(bundle(files, "1" * 40, kube_namespace))
    assert ok, output
    assert len(live(kube_api_client, kube_namespace)) == COPIES * len(FILES)
    yield applyer, files
    applyer.close()


def second_commit(files: dict[str, str]) -> dict[str, str]:
    """The next commit: a new image in one file."""
    changed = files[CHANGED_FILE].replace("gb-frontend:v4", "gb-frontend:v5")
    assert changed != files[CHANGED_FILE]
    return {**files, CHANGED_FILE: changed}


@pytest.mark.kube
def test_a_commit_changing_one_file_writes_only_that_files_object(
    applied: tuple[KubernetesApplyer, dict[str, str]],
    kube_namespace: str,
    kube_api_client: client.ApiClient,
) -> None:
    applyer, files = applied
    before = versions(kube_api_client, kube_namespace)

    ok, output = applyer.apply(bundle(second_commit(files), "2" * 40, kube_namespace))

    assert ok, output
    assert written(before, versions(kube_api_client, kube_namespace)) == ["Deployment/frontend-07"]
    assert output.splitlines()[-1].startswith("1 objects applied, 119 unchanged")
    frontend = live(kube_api_client, kube_namespace)["Deployment/frontend-07"]
    image = frontend["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "gcr.io/google-samples/gb-frontend:v5"


@pytest.mark.kube
def test_a_new_applyer_writes_only_the_changed_object_too(
    applied: tuple[KubernetesApplyer, dict[str, str]],
    kube_env: KubeTestEnv,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
) -> None:
    """As after a worker restart, or on another apply worker: nothing remembered, and the
    unchanged objects still cost no write."""
    _, files = applied
    before = versions(kube_api_client, kube_namespace)
    fresh = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))
    try:
        ok, output = fresh.apply(bundle(second_commit(files), "2" * 40, kube_namespace))
    finally:
        fresh.close()

    assert ok, output
    assert written(before, versions(kube_api_client, kube_namespace)) == ["Deployment/frontend-07"]


@pytest.mark.kube
def test_the_objects_carry_no_commit(
    applied: tuple[KubernetesApplyer, dict[str, str]],
    kube_namespace: str,
    kube_api_client: client.ApiClient,
) -> None:
    for key, obj in live(kube_api_client, kube_namespace).items():
        assert COMMIT_ANNOTATION not in (obj["metadata"].get("annotations") or {}), key


@pytest.fixture
def patches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(path, dry run?) of every PATCH the applyers send, by hooking ``KubeApi.request``."""
    log: list[tuple[str, bool]] = []
    request = KubeApi.request

    def recording(self: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
        if method == "PATCH":
            log.append((path.rsplit("/", 1)[1], "dryRun" in (kwargs.get("query") or {})))
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(KubeApi, "request", recording)
    return log


@pytest.mark.kube
def test_a_new_applyer_sends_no_apply_whose_dry_run_changes_nothing_and_restores_a_hand_edit(
    applied: tuple[KubernetesApplyer, dict[str, str]],
    kube_env: KubeTestEnv,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    patches: list[tuple[str, bool]],
) -> None:
    _, files = applied
    apps = client.AppsV1Api(kube_api_client)
    apps.patch_namespaced_deployment(
        "redis-master-12", kube_namespace, {"spec": {"replicas": 5}}, field_manager="kubectl-edit"
    )
    before = versions(kube_api_client, kube_namespace)
    patches.clear()
    fresh = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))
    try:
        ok, output = fresh.apply(bundle(second_commit(files), "2" * 40, kube_namespace))
        assert ok, output
        assert sorted(path for path, dry in patches if not dry) == [
            "frontend-07",
            "redis-master-12",
        ]
        assert len([path for path, dry in patches if dry]) == COPIES * len(FILES)
        assert output.splitlines()[-1].startswith("2 objects applied, 118 unchanged")
        assert written(before, versions(kube_api_client, kube_namespace)) == [
            "Deployment/frontend-07",
            "Deployment/redis-master-12",
        ]
        assert apps.read_namespaced_deployment("redis-master-12", kube_namespace).spec.replicas == 1

        # What the dry runs found unchanged is remembered: the next sync lists, nothing more.
        patches.clear()
        ok, output = fresh.apply(bundle(second_commit(files), "3" * 40, kube_namespace))
        assert ok, output
        assert patches == []
    finally:
        fresh.close()
