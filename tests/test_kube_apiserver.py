"""The real kube-apiserver of the test environment (tools/k8s-testenv, tests/support/kubeenv.py).

These tests pin down what the rest of the suite relies on: server-side apply through the
official Python client and through kubectl, custom resources, RBAC, and the pinned version.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from tests.support.kubeenv import KubeTestEnv, pinned_version

pytestmark = pytest.mark.kube

FIELD_MANAGER = "simple-gitops-test"
CRD_GROUP = "testenv.simplegitops.local"


@pytest.fixture
def dynamic(kube_env: KubeTestEnv, kube_api_client: client.ApiClient) -> DynamicClient:
    # Keep the discovery cache in the server's directory, not in a shared /tmp file.
    return DynamicClient(kube_api_client, cache_file=str(kube_env.workdir / "discovery.json"))


@pytest.fixture
def applied_namespace(kube_api_client: client.ApiClient) -> Iterator[str]:
    """The name of a namespace that the test creates itself by server-side apply."""
    name = f"applied-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        client.CoreV1Api(kube_api_client).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def crd_manifest(plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer"},
                                        "color": {"type": "string"},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def manifests(namespace: str, plural: str, kind: str) -> list[dict[str, Any]]:
    """A Namespace, a ConfigMap, a Deployment, a CRD and one object of it, in apply order."""
    labels = {"app.kubernetes.io/name": "web", "app.kubernetes.io/managed-by": "simple-gitops"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"team": "platform"}},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config", "namespace": namespace, "labels": labels},
            "data": {"GREETING": "hello", "LOG_LEVEL": "info"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "registry.example/web:1.0.0",
                                "ports": [{"containerPort": 8080}],
                                "envFrom": [{"configMapRef": {"name": "web-config"}}],
                            }
                        ]
                    },
                },
            },
        },
        crd_manifest(plural, kind),
        {
            "apiVersion": f"{CRD_GROUP}/v1",
            "kind": kind,
            "metadata": {"name": "blue-widget", "namespace": namespace},
            "spec": {"size": 3, "color": "blue"},
        },
    ]


def resource_for(dynamic: DynamicClient, api_version: str, kind: str) -> Resource:
    """Look a kind up in discovery, waiting for a new CRD's kind to be served."""
    deadline = time.monotonic() + 30
    while True:
        try:
            resource: Resource = dynamic.resources.get(api_version=api_version, kind=kind)
            return resource
        except ResourceNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_established(dynamic: DynamicClient, crd_name: str) -> None:
    crds = resource_for(dynamic, "apiextensions.k8s.io/v1", "CustomResourceDefinition")
    deadline = time.monotonic() + 30
    while True:
        crd = crds.get(name=crd_name).to_dict()
        conditions = crd.get("status", {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"CRD {crd_name} not Established: {conditions}")
        time.sleep(0.1)


def apply(dynamic: DynamicClient, manifest: dict[str, Any]) -> dict[str, Any]:
    resource = resource_for(dynamic, manifest["apiVersion"], manifest["kind"])
    result = dynamic.server_side_apply(
        resource,
        body=manifest,
        namespace=manifest["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )
    return dict(result.to_dict())


def apply_all(dynamic: DynamicClient, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for doc in docs:
        results.append(apply(dynamic, doc))
        if doc["kind"] == "CustomResourceDefinition":
            wait_established(dynamic, doc["metadata"]["name"])
    return results


def read_back(dynamic: DynamicClient, manifest: dict[str, Any]) -> dict[str, Any]:
    resource = resource_for(dynamic, manifest["apiVersion"], manifest["kind"])
    meta = manifest["metadata"]
    return dict(resource.get(name=meta["name"], namespace=meta.get("namespace")).to_dict())


def unique_kind() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return f"widgets{suffix}", f"Widget{suffix.capitalize()}"


def test_server_side_apply_creates_namespace_configmap_deployment_crd_and_custom_object(
    dynamic: DynamicClient, applied_namespace: str
) -> None:
    plural, kind = unique_kind()
    docs = manifests(applied_namespace, plural, kind)

    apply_all(dynamic, docs)
    namespace, configmap, deployment, crd, widget = (read_back(dynamic, d) for d in docs)

    assert namespace["metadata"]["labels"]["team"] == "platform"
    assert configmap["data"] == {"GREETING": "hello", "LOG_LEVEL": "info"}
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/web:1.0.0"
    # The server filled in defaults that the manifest left out.
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert crd["spec"]["names"]["kind"] == kind
    assert widget["spec"] == {"size": 3, "color": "blue"}
    for obj in (namespace, configmap, deployment, crd, widget):
        managers = [m["manager"] for m in obj["metadata"]["managedFields"]]
        assert FIELD_MANAGER in managers, obj["metadata"]["name"]


def test_server_side_apply_of_same_content_keeps_resource_version(
    dynamic: DynamicClient, applied_namespace: str
) -> None:
    plural, kind = unique_kind()
    docs = manifests(applied_namespace, plural, kind)
    apply_all(dynamic, docs)
    before = {d["kind"]: read_back(dynamic, d)["metadata"]["resourceVersion"] for d in docs}

    second = {d["kind"]: apply(dynamic, d)["metadata"]["resourceVersion"] for d in docs}
    after = {d["kind"]: read_back(dynamic, d)["metadata"]["resourceVersion"] for d in docs}

    assert second == before
    assert after == before


def test_server_side_apply_of_changed_content_bumps_resource_version(
    dynamic: DynamicClient, kube_namespace: str
) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": kube_namespace},
        "data": {"MODE": "a"},
    }
    first = apply(dynamic, configmap)["metadata"]["resourceVersion"]

    changed = apply(dynamic, {**configmap, "data": {"MODE": "b"}})

    assert changed["metadata"]["resourceVersion"] != first
    assert changed["data"] == {"MODE": "b"}


def run_kubectl(env: KubeTestEnv, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        env.kubectl_command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def test_kubectl_server_side_apply_then_get_returns_applied_objects(
    kube_env: KubeTestEnv, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "from-kubectl"},
            "data": {"answer": "42"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]
    stream = yaml.safe_dump_all(docs)

    out = run_kubectl(
        kube_env, "apply", "--server-side", "--field-manager=kubectl-test",
        "-n", kube_namespace, "-f", "-", stdin=stream,
    )  # fmt: skip
    assert "configmap/from-kubectl serverside-applied" in out
    assert "service/web serverside-applied" in out

    got = json.loads(
        run_kubectl(kube_env, "get", "configmap,service", "-n", kube_namespace, "-o", "json")
    )
    by_name = {(i["kind"], i["metadata"]["name"]): i for i in got["items"]}
    assert by_name[("ConfigMap", "from-kubectl")]["data"] == {"answer": "42"}
    service = by_name[("Service", "web")]
    # A ClusterIP was allocated from --service-cluster-ip-range (10.0.0.0/16).
    assert service["spec"]["clusterIP"].startswith("10.0.")

    # What kubectl applied is what the Python client sees on the same server.
    core = client.CoreV1Api(kube_api_client)
    cm = core.read_namespaced_config_map("from-kubectl", kube_namespace)
    assert cm.data == {"answer": "42"}
    assert cm.metadata is not None
    applied_version = by_name[("ConfigMap", "from-kubectl")]["metadata"]["resourceVersion"]
    assert cm.metadata.resource_version == applied_version

    # Applying the same stream again is a no-op.
    run_kubectl(
        kube_env, "apply", "--server-side", "--field-manager=kubectl-test",
        "-n", kube_namespace, "-f", "-", stdin=stream,
    )  # fmt: skip
    again = json.loads(
        run_kubectl(kube_env, "get", "configmap/from-kubectl", "-n", kube_namespace, "-o", "json")
    )
    assert again["metadata"]["resourceVersion"] == applied_version


def test_version_endpoint_reports_the_pinned_kubernetes_version(kube_env: KubeTestEnv) -> None:
    version = pinned_version()
    response = requests.get(
        f"{kube_env.server}/version",
        headers={"Authorization": f"Bearer {kube_env.token}"},
        verify=str(kube_env.ca_file),
        timeout=10,
    )
    response.raise_for_status()
    info = response.json()

    assert info["gitVersion"] == version
    assert info["major"] == "1"
    assert info["minor"] == version.split(".")[1]

    client_info = json.loads(run_kubectl(kube_env, "version", "--client", "-o", "json"))
    assert client_info["clientVersion"]["gitVersion"] == version


def test_rbac_denies_a_user_without_bindings(kube_env: KubeTestEnv, kube_namespace: str) -> None:
    allowed = subprocess.run(
        kube_env.kubectl_command(
            "auth", "can-i", "list", "secrets", "-n", kube_namespace,
            f"--as=system:serviceaccount:{kube_namespace}:nobody",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert allowed.stdout.strip() == "no"

    anonymous = requests.get(
        f"{kube_env.server}/api/v1/namespaces/{kube_namespace}/secrets",
        verify=str(kube_env.ca_file),
        timeout=10,
    )
    assert anonymous.status_code in (401, 403)


def test_readyz_answers_for_the_admin_token(kube_env: KubeTestEnv) -> None:
    response = requests.get(
        f"{kube_env.server}/readyz?verbose",
        headers={"Authorization": f"Bearer {kube_env.token}"},
        verify=str(kube_env.ca_file),
        timeout=10,
    )
    assert response.status_code == 200
    assert "readyz check passed" in response.text
