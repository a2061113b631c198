"""Real repository layouts end to end: commits pushed to the Git server (or the GitHub
stand-in), poll, fetch and apply on Celery worker processes, objects read back from the
real kube-apiserver. After each sync the objects there are exactly what ``kubectl
kustomize`` (or the files) say, with our labels, and nothing else.

The layouts are those of tests/data/repos/examples (Argo CD's and the Kubernetes
project's examples, a base with two overlays and a component), with namespaces made
unique per test. The apiserver runs without controllers, so nothing rolls out: the
services do not wait for health (``NO_ROLLOUT``); tests/test_health_e2e.py covers that.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from rest_framework.test import APIClient

from syncworker.kube.labels import (
    COMMIT_ANNOTATION,
    CREATE_ONLY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SERVICE_LABEL,
)
from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.render.kustomize import kubectl_binary
from syncworker.tasks import poll_repository
from tests.support.e2e import finished, sync
from tests.support.gitserver import WorkingCopy
from tests.support.kubeenv import KubeTestEnv
from tests.support.repo_files import disk_files
from tests.support.source_fixtures import GitHubRepo
from tests.support.workers import WorkerProcess

NO_ROLLOUT = {"wait": False}

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
Status = Deployment.Status
PROD = "monorepo/apps/web/overlays/production"
STAGING = "monorepo/apps/web/overlays/staging"
BASE = "monorepo/apps/web/base"
KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
]
PODMONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "plural": "podmonitors",
            "singular": "podmonitor",
            "kind": "PodMonitor",
            "listKind": "PodMonitorList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
Key = tuple[str, str, str]  # kind, namespace, name


@pytest.fixture
def dynamic(kube_env: KubeTestEnv, kube_api_client: k8s.ApiClient) -> Iterator[DynamicClient]:
    """A client for any kind, with the PodMonitor CRD (the monitoring component's kind,
    from the Prometheus operator) installed and served."""
    cache = kube_env.workdir / f"discovery-{uuid.uuid4().hex[:8]}.json"
    crds = DynamicClient(kube_api_client, cache_file=str(cache)).resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    try:
        crds.create(body=PODMONITOR_CRD)
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while True:
        client = DynamicClient(kube_api_client, cache_file=str(cache))
        try:
            client.resources.get(api_version="monitoring.coreos.com/v1", kind="PodMonitor")
            break
        except ResourceNotFoundError:
            assert time.monotonic() < deadline, "the PodMonitor CRD was never served"
            cache.unlink(missing_ok=True)
            time.sleep(0.5)
    yield client
    cache.unlink(missing_ok=True)


@pytest.fixture
def names(kube_namespace: str) -> dict[str, str]:
    """Namespaces no test made yet, so that the services create them."""
    base = kube_namespace[:45]
    return {short: f"{base}-{short}" for short in ("prod", "stg", "a", "b", "c")}


def monorepo(names: dict[str, str]) -> dict[str, str | bytes | None]:
    """The base-and-overlays layout, each overlay in its test namespace."""
    files: dict[str, str | bytes | None] = {}
    for path, data in disk_files().items():
        if not path.startswith("monorepo/"):
            continue
        if path.endswith("kustomization.yaml"):
            text = data.decode()
            text = re.sub(r"(?m)^namespace: web-staging$", f"namespace: {names['stg']}", text)
            text = re.sub(r"(?m)^namespace: web$", f"namespace: {names['prod']}", text)
            files[path] = text
        else:
            files[path] = data
    return files


def kustomize(copy: WorkingCopy, directory: str) -> list[dict[str, Any]]:
    """What upstream kustomize builds from the working copy, the reference."""
    out = subprocess.run(
        [str(kubectl_binary()), "kustomize", str(copy.path / directory)],
        check=True,
        capture_output=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def from_files(copy: WorkingCopy, paths: Iterable[str]) -> list[dict[str, Any]]:
    """The objects the files hold (a v1 List unpacked), the reference for plain trees."""
    objects: list[dict[str, Any]] = []
    for path in paths:
        text = (copy.path / path).read_text()
        docs = [json.loads(text)] if path.endswith(".json") else yaml.safe_load_all(text)
        for doc in docs:
            if doc and doc.get("kind") == "List":
                objects.extend(doc["items"])
            elif doc:
                objects.append(doc)
    return objects


def live(dynamic: DynamicClient, namespaces: Iterable[str]) -> dict[Key, dict[str, Any]]:
    """Every object of the kinds these layouts use in ``namespaces``, whoever made it."""
    found: dict[Key, dict[str, Any]] = {}
    for api_version, kind in KINDS:
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        for namespace in namespaces:
            for item in resource.get(namespace=namespace).items:
                obj = item.to_dict()
                found[(kind, namespace, obj["metadata"]["name"])] = obj
    return found


def assert_exactly(
    dynamic: DynamicClient,
    expected: dict[str, list[dict[str, Any]]],
    namespaces: dict[str, str],
    commits: dict[str, str],
) -> None:
    """The objects in the namespaces are exactly those expected (service -> objects; a
    service's objects without a namespace land in ``namespaces[service]``), each with
    every field the reference gives, its own labels plus ours; the commit is on the
    inventory row of each object (its deployment), not on the object."""
    wanted: dict[Key, tuple[str, dict[str, Any]]] = {}
    for service, objects in expected.items():
        for obj in objects:
            namespace = obj["metadata"].get("namespace") or namespaces[service]
            wanted[(obj["kind"], namespace, obj["metadata"]["name"])] = (service, obj)
    there = live(dynamic, set(namespaces.values()))
    assert sorted(there) == sorted(wanted), "exactly the objects the reference names"
    for key, (service, want) in wanted.items():
        got = there[key]
        ours = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SERVICE_LABEL: service}
        assert got["metadata"].get("labels") == {**want["metadata"].get("labels", {}), **ours}
        assert COMMIT_ANNOTATION not in (got["metadata"].get("annotations") or {}), key
        for annotation, value in want["metadata"].get("annotations", {}).items():
            assert got["metadata"]["annotations"][annotation] == value, key
        for field, value in want.items():
            if field not in ("apiVersion", "kind", "metadata"):
                assert_within(value, got.get(field), f"{key}.{field}")
    rows = AppliedObject.objects.filter(service__name__in=commits).select_related("deployment")
    recorded = {(r.kind, r.namespace, r.name): r.deployment for r in rows}
    for key, (service, _) in wanted.items():
        deployment = recorded.get(key)
        assert deployment is not None and deployment.commit_sha == commits[service], key


def assert_within(want: Any, got: Any, where: str) -> None:
    """``want`` is found in ``got`` (the apiserver adds defaults, never drops fields)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        for name, value in want.items():
            assert_within(value, got.get(name), f"{where}.{name}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (one, other) in enumerate(zip(want, got, strict=True)):
            assert_within(one, other, f"{where}[{index}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def overlays(repo: Repository, names: dict[str, str]) -> tuple[Service, Service]:
    prod = Service.objects.create(
        name="web-prod", repository=repo, k8s_yaml_dir=PROD, namespace=names["prod"], **NO_ROLLOUT
    )
    staging = Service.objects.create(
        name="web-staging",
        repository=repo,
        k8s_yaml_dir=STAGING,
        namespace=names["stg"],
        **NO_ROLLOUT,
    )
    return prod, staging


def test_a_base_and_two_overlays_deploy_exactly_what_kustomize_builds_and_follow_the_base(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    dynamic: DynamicClient,
    names: dict[str, str],
    git_repo: WorkingCopy,
) -> None:
    commit = git_repo.commit(monorepo(names))
    repo = Repository.objects.create(key="mono", provider="git", url=git_repo.url)
    prod, staging = overlays(repo, names)
    spaces = {"web-prod": names["prod"], "web-staging": names["stg"]}

    def check(counts: tuple[int, int], commits: dict[str, str]) -> None:
        for service, count in zip((prod, staging), counts, strict=True):
            last = finished(service, count)[-1]
            assert last.status == Status.SUCCEEDED, last.error
        expected = {
            "web-prod": kustomize(git_repo, PROD),
            "web-staging": kustomize(git_repo, STAGING),
        }
        assert_exactly(dynamic, expected, spaces, commits)

    sync(repo)
    check((1, 1), {"web-prod": commit, "web-staging": commit})
    secret = next(o for o in kustomize(git_repo, PROD) if o["kind"] == "Secret")
    assert secret["metadata"]["name"].startswith("web-credentials-prod-")  # the generator's

    # The shared base: a new image, and configuration that renames the generated
    # ConfigMap (its content hash): both overlays follow, the old ConfigMaps are pruned.
    deployment = Path(git_repo.path, BASE, "deployment.yaml").read_text()
    properties = Path(git_repo.path, BASE, "application.properties").read_text()
    second = git_repo.commit(
        {
            f"{BASE}/deployment.yaml": deployment.replace("web:1.0.0", "web:1.0.1"),
            f"{BASE}/application.properties": properties.replace("ttl=60", "ttl=120"),
        }
    )
    sync(repo)
    check((2, 2), {"web-prod": second, "web-staging": second})
    pruned = finished(staging, 2)[-1].pruned_objects
    assert [o["kind"] for o in pruned] == ["ConfigMap"]

    git_repo.commit({"monorepo/apps/platform/team-a/quota.yaml": "# moved to another repo\n"})
    sync(repo)
    assert (prod.deployments.count(), staging.deployments.count()) == (2, 2), "nothing read it"

    component = Path(git_repo.path, "monorepo/components/monitoring/kustomization.yaml")
    third = git_repo.commit(
        {component.relative_to(git_repo.path).as_posix(): component.read_text().replace(
            'prometheus.io/port: "8080"', 'prometheus.io/port: "9090"'
        )}
    )  # fmt: skip
    sync(repo)
    check((3, 2), {"web-prod": third, "web-staging": second})
    assert staging.deployments.count() == 2, "staging does not use the component"


def test_plain_trees_deploy_their_manifests_and_show_what_they_skipped(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    dynamic: DynamicClient,
    names: dict[str, str],
    git_repo: WorkingCopy,
    staff_api: APIClient,
) -> None:
    commit = git_repo.commit(dict(disk_files()))
    repo = Repository.objects.create(key="plain", provider="git", url=git_repo.url)
    guestbook = "kubernetes-examples/guestbook"
    services: dict[str, dict[str, Any]] = {
        # An application's own cassandra.yaml lies beside the manifests.
        "cassandra": {"k8s_yaml_dir": "kubernetes-examples/cassandra", "namespace": names["a"]},
        # all-in-one/ and legacy/ hold other versions of the same objects.
        "guestbook": {"k8s_yaml_dir": guestbook, "namespace": names["b"], "recurse": False},
        "api": {"k8s_yaml_dir": "json-app", "namespace": names["c"]},
    }
    rows = {
        name: Service.objects.create(name=name, repository=repo, **fields, **NO_ROLLOUT)
        for name, fields in services.items()
    }
    sync(repo)
    done = {name: finished(row, 1)[-1] for name, row in rows.items()}
    for deployment in done.values():
        assert deployment.status == Status.SUCCEEDED, deployment.error

    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "api-config"},
        "data": {
            "config_settings.json": Path(
                git_repo.path, "json-app/config/settings.json"
            ).read_text(),
            "package.json": Path(git_repo.path, "json-app/package.json").read_text(),
        },
    }
    expected = {
        "cassandra": from_files(
            git_repo,
            [
                f"kubernetes-examples/cassandra/cassandra-{n}.yaml"
                for n in ("service", "statefulset")
            ],
        ),
        "guestbook": from_files(
            git_repo,
            [
                f"{guestbook}/{n}.yaml"
                for n in (
                    "frontend-deployment",
                    "frontend-service",
                    "redis-master-deployment",
                    "redis-master-service",
                )
            ],
        ),
        "api": [
            *from_files(git_repo, ["json-app/deployment.json", "json-app/services.json"]),
            config,
        ],
    }
    spaces = {name: fields["namespace"] for name, fields in services.items()}
    assert_exactly(dynamic, expected, spaces, dict.fromkeys(services, commit))

    answer = staff_api.get(f"/api/deployments/{done['cassandra'].pk}/")
    assert answer.status_code == 200
    (warning,) = answer.json()["warnings"]
    assert warning.startswith(
        "kubernetes-examples/cassandra/image/files/cassandra.yaml: document 1"
    )
    assert answer.json()["status"] == Status.SUCCEEDED

    # Leaving out the alternatives instead of the subfolders: the same objects.
    Service.objects.filter(name="guestbook").update(
        recurse=True, exclude=["legacy/", "all-in-one/"]
    )
    only = [rows["guestbook"].pk]
    poll_repository.apply_async(
        (repo.pk,),
        {"trigger": "manual", "force": True, "service_ids": only},
        ignore_result=False,
    ).get(timeout=60)
    again = finished(rows["guestbook"], 2)[-1]
    assert sum(row.deployments.count() for row in rows.values()) == 4, "the others stay"
    assert again.status == Status.SUCCEEDED, again.error
    assert again.bundle_digest == done["guestbook"].bundle_digest


def test_a_missing_namespace_is_created_before_the_objects_and_never_pruned(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    names: dict[str, str],
    git_repo: WorkingCopy,
) -> None:
    git_repo.commit(dict(disk_files()))
    repo = Repository.objects.create(key="ns", provider="git", url=git_repo.url)
    service = Service.objects.create(
        name="guestbook",
        repository=repo,
        k8s_yaml_dir="argocd-example-apps/guestbook",
        **NO_ROLLOUT,
        namespace=names["a"],
    )
    sync(repo)
    first = finished(service, 1)[-1]
    assert first.status == Status.SUCCEEDED, first.error

    created = core.read_namespace(names["a"]).metadata
    assert created is not None and created.labels and created.annotations
    assert created.labels[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
    assert created.annotations[CREATE_ONLY_ANNOTATION] == "true"
    deployed = core.list_namespaced_service(names["a"]).items
    assert [s.metadata.name for s in deployed if s.metadata] == ["guestbook-ui"]

    # The service moves to another namespace: its objects follow and the old ones are
    # pruned, but not the namespace it created.
    Service.objects.filter(pk=service.pk).update(namespace=names["b"])
    poll_repository.apply_async(
        (repo.pk,), {"trigger": "manual", "force": True}, ignore_result=False
    ).get(timeout=60)
    moved = finished(service, 2)[-1]
    assert moved.status == Status.SUCCEEDED, moved.error

    assert sorted(o["kind"] for o in moved.pruned_objects) == ["Deployment", "Service"]
    assert core.list_namespaced_service(names["a"]).items == []
    left = core.read_namespace(names["a"])
    assert left.status is not None and left.status.phase == "Active"
    assert core.read_namespace(names["b"]).metadata is not None

    # Without create_namespace, a namespace that does not exist fails the deployment,
    # naming it, and nothing is applied.
    Service.objects.filter(pk=service.pk).update(namespace=names["c"], create_namespace=False)
    poll_repository.apply_async(
        (repo.pk,), {"trigger": "manual", "force": True}, ignore_result=False
    ).get(timeout=60)
    refused = finished(service, 3)[-1]
    assert refused.status == Status.FAILED
    assert names["c"] in refused.error
    with pytest.raises(k8s.ApiException) as missing:
        core.read_namespace(names["c"])
    assert missing.value.status == 404
    assert len(core.list_namespaced_service(names["b"]).items) == 1, "the old ones stay"


def test_a_kustomize_overlay_is_served_through_the_github_source(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    dynamic: DynamicClient,
    names: dict[str, str],
    github_repo: GitHubRepo,
) -> None:
    commit = github_repo.copy.commit(monorepo(names))
    repo = Repository.objects.create(
        key="gh",
        provider=Repository.Provider.GITHUB,
        owner=github_repo.owner,
        name=github_repo.name,
        url=f"https://github.com/{github_repo.owner}/{github_repo.name}",
        api_url=github_repo.github.api_url,
    )
    _, staging = overlays(repo, names)
    Service.objects.filter(name="web-prod").update(enabled=False)
    spaces = {"web-staging": names["stg"]}

    sync(repo)
    first = finished(staging, 1)[-1]
    assert first.status == Status.SUCCEEDED, first.error
    assert BASE in first.paths_read
    expected = {"web-staging": kustomize(github_repo.copy, STAGING)}
    assert_exactly(dynamic, expected, spaces, {"web-staging": commit})

    service_yaml = Path(github_repo.copy.path, BASE, "service.yaml").read_text()
    second = github_repo.copy.commit(
        {f"{BASE}/service.yaml": service_yaml.replace("port: 80", "port: 8081")}
    )
    sync(repo)
    again = finished(staging, 2)[-1]
    assert again.status == Status.SUCCEEDED, again.error
    expected = {"web-staging": kustomize(github_repo.copy, STAGING)}
    assert_exactly(dynamic, expected, spaces, {"web-staging": second})
