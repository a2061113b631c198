"""KubernetesApplyer against the real kube-apiserver of the test bed."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from syncworker.applyers.base import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SERVICE_LABEL,
    ObjectRef,
    TransientApplyError,
)
from syncworker.applyers.kubeapi import KubeApi
from syncworker.applyers.kubernetes import KubernetesApplyer
from tests.support.kubeenv import KubeTestEnv, pinned_version


def kube_get(api_client: client.ApiClient, path: str) -> Any:
    """GET ``path`` as JSON through the official client; None when it is not there.

    Plain JSON rather than the typed models, whose every field is Optional.
    """
    method, url, headers, _, _ = api_client.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = api_client.call_api(method, url, headers)
    response.read()
    if response.status == 404:
        return None
    assert response.status == 200, response.data
    return json.loads(response.data or b"null")


def labels(service: str = "web") -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SERVICE_LABEL: service}


def to_yaml(objects: list[dict[str, Any]]) -> str:
    # JSON documents are YAML, and keep the test free of formatting questions.
    return "\n---\n".join(json.dumps(obj) for obj in objects)


class AppBundle:
    """A Namespace, ConfigMap, Deployment, Service, a CRD and a custom resource of it,
    all new for one test, listed dependents first (the worst order to be given)."""

    def __init__(self, base: str, *, greeting: str = "hello") -> None:
        self.namespace = f"{base}-app"
        self.group = f"t{uuid.uuid4().hex[:8]}.example.com"
        self.crd_name = f"widgets.{self.group}"
        self.greeting = greeting

    def objects(self) -> list[dict[str, Any]]:
        ns, lab = self.namespace, labels()
        app = {"app": "web"}
        return [
            {"apiVersion": f"{self.group}/v1", "kind": "Widget",
             "metadata": {"name": "w1", "namespace": ns, "labels": lab}, "spec": {"size": 3}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": ns, "labels": lab},
             "spec": {"selector": app, "ports": [{"port": 80, "targetPort": 8080}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "web", "namespace": ns, "labels": lab},
             "spec": {"replicas": 2, "selector": {"matchLabels": app},
                      "template": {"metadata": {"labels": app},
                                   "spec": {"containers": [{"name": "web",
                                                            "image": "nginx:1.27"}]}}}},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "web-config", "namespace": ns, "labels": lab},
             "data": {"greeting": self.greeting, "released": "2024-01-01"}},
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": self.crd_name, "labels": lab},
             "spec": {"group": self.group, "scope": "Namespaced",
                      "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                                "listKind": "WidgetList"},
                      "versions": [{"name": "v1", "served": True, "storage": True,
                                    "schema": {"openAPIV3Schema": {
                                        "type": "object",
                                        "properties": {"spec": {
                                            "type": "object",
                                            "properties": {"size": {"type": "integer"}}}}}}}]}},
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": ns, "labels": lab}},
        ]  # fmt: skip

    def yaml(self) -> str:
        return to_yaml(self.objects())

    def paths(self) -> dict[str, str]:
        ns = f"/api/v1/namespaces/{self.namespace}"
        return {
            "namespace": ns,
            "configmap": f"{ns}/configmaps/web-config",
            "service": f"{ns}/services/web",
            "deployment": f"/apis/apps/v1/namespaces/{self.namespace}/deployments/web",
            "crd": f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{self.crd_name}",
            "widget": f"/apis/{self.group}/v1/namespaces/{self.namespace}/widgets/w1",
        }

    def read(self, api_client: client.ApiClient, what: str) -> Any:
        return kube_get(api_client, self.paths()[what])

    def resource_versions(self, api_client: client.ApiClient) -> dict[str, str]:
        return {
            what: kube_get(api_client, path)["metadata"]["resourceVersion"]
            for what, path in self.paths().items()
        }


def closed_port_kubeconfig(kube_env: KubeTestEnv, directory: Path) -> Path:
    """A copy of the test kubeconfig pointing at a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = json.loads(kube_env.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = directory / "kubeconfig-closed-port"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def applyer(kube_env: KubeTestEnv) -> Iterator[KubernetesApplyer]:
    applyer = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))
    yield applyer
    applyer.close()


@pytest.mark.kube
def test_install_reports_the_server_version(
    applyer: KubernetesApplyer, kube_env: KubeTestEnv
) -> None:
    ok, message = applyer.install()

    assert ok, message
    assert message == f"kubernetes {pinned_version()} at {kube_env.server}"


@pytest.mark.kube
def test_a_bundle_in_any_order_is_applied_with_crds_before_their_custom_resources(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    app = AppBundle(kube_namespace)

    ok, output = applyer.apply(app.yaml())

    assert ok, output
    lines = output.splitlines()
    assert lines[0] == f"namespace/{app.namespace} serverside-applied"
    assert lines[1] == f"customresourcedefinition.apiextensions.k8s.io/{app.crd_name} " + (
        "serverside-applied"
    )
    assert f"widget.{app.group}/w1 serverside-applied" == lines[-2]
    assert lines[-1].startswith("6 objects applied in ")
    config = app.read(kube_api_client, "configmap")
    assert config["data"] == {"greeting": "hello", "released": "2024-01-01"}
    assert config["metadata"]["labels"] == labels()
    deployment = app.read(kube_api_client, "deployment")
    assert deployment["spec"]["replicas"] == 2
    managers = {entry["manager"] for entry in deployment["metadata"]["managedFields"]}
    assert "simple-gitops" in managers
    assert app.read(kube_api_client, "service")["spec"]["ports"][0]["targetPort"] == 8080
    assert app.read(kube_api_client, "widget")["spec"] == {"size": 3}
    assert app.read(kube_api_client, "crd")["spec"]["names"]["kind"] == "Widget"


@pytest.mark.kube
def test_applying_the_same_bundle_again_changes_nothing_and_a_changed_field_is_updated(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    app = AppBundle(kube_namespace)
    assert applyer.apply(app.yaml())[0]
    before = app.resource_versions(kube_api_client)

    ok, output = applyer.apply(app.yaml())

    assert ok, output
    assert app.resource_versions(kube_api_client) == before

    app.greeting = "bonjour"
    ok, output = applyer.apply(app.yaml())

    assert ok, output
    after = app.resource_versions(kube_api_client)
    assert after["configmap"] != before["configmap"]
    assert {k: v for k, v in after.items() if k != "configmap"} == {
        k: v for k, v in before.items() if k != "configmap"
    }
    assert app.read(kube_api_client, "configmap")["data"]["greeting"] == "bonjour"


@pytest.mark.kube
def test_an_invalid_object_fails_the_apply_naming_it_after_what_was_applied(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    ns = kube_namespace
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": ns, "labels": labels()},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }  # fmt: skip
    ok_config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "fine", "namespace": ns},
    }

    ok, output = applyer.apply(to_yaml([broken, ok_config]))

    assert not ok
    first = output.splitlines()[0]
    assert first.startswith(f"Deployment {ns}/broken: ")
    assert "spec.selector" in first
    assert "configmap/fine serverside-applied" in output.splitlines()
    assert output.splitlines()[-1].startswith("failed: 1 of 2 objects applied")


@pytest.mark.kube
def test_an_unknown_kind_or_field_is_reported_not_dropped(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    unknown_kind = {"apiVersion": "nowhere.example.com/v1", "kind": "Ghost",
                    "metadata": {"name": "boo", "namespace": kube_namespace}}  # fmt: skip
    typo = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "typo", "namespace": kube_namespace},
            "dta": {"a": "b"}}  # fmt: skip

    ok, output = applyer.apply(to_yaml([unknown_kind]))
    assert not ok
    assert output.startswith(f"Ghost {kube_namespace}/boo: the server does not serve kind Ghost")

    ok, output = applyer.apply(to_yaml([typo]))
    assert not ok
    assert output.startswith(f"ConfigMap {kube_namespace}/typo: ")
    assert "dta" in output.splitlines()[0]


@pytest.mark.kube
def test_objects_without_namespace_go_to_the_configured_namespace(
    kube_env: KubeTestEnv, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    applyer = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig), namespace=kube_namespace)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "homeless"}}

    ok, output = applyer.apply(to_yaml([config]))

    assert ok, output
    assert kube_get(kube_api_client, f"/api/v1/namespaces/{kube_namespace}/configmaps/homeless")


@pytest.mark.kube
def test_an_unreachable_server_is_a_transient_error(kube_env: KubeTestEnv, tmp_path: Path) -> None:
    applyer = KubernetesApplyer(kubeconfig=str(closed_port_kubeconfig(kube_env, tmp_path)))
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}

    with pytest.raises(TransientApplyError, match="unreachable"):
        applyer.apply(to_yaml([config]))
    ok, message = applyer.install()
    assert not ok
    assert "unreachable" in message


@pytest.mark.kube
def test_prune_deletes_only_objects_labelled_for_the_service(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    ns = kube_namespace
    core = client.CoreV1Api(kube_api_client)

    def config_map(name: str, service: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if service:
            meta["labels"] = labels(service)
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    ok, output = applyer.apply(
        to_yaml([config_map("ours", "web"), config_map("unlabelled", None),
                 config_map("theirs", "other")])
    )  # fmt: skip
    assert ok, output
    refs = [
        ObjectRef("v1", "ConfigMap", ns, name)
        for name in ("ours", "unlabelled", "theirs", "already-gone")
    ]

    result = applyer.prune(refs, service="web")

    assert result.ok, result.output
    assert result.pruned == [refs[0], refs[3]]
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("ours", ns)
    assert gone.value.status == 404
    core.read_namespaced_config_map("unlabelled", ns)
    core.read_namespaced_config_map("theirs", ns)
    assert "configmap/unlabelled left alone: not labelled as web's" in result.output
    assert result.output.splitlines()[-1] == "2 of 4 objects pruned"


@pytest.mark.kube
def test_prune_removes_custom_resources_before_their_crd(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    app = AppBundle(kube_namespace)
    assert applyer.apply(app.yaml())[0]
    refs = [ObjectRef.of(obj) for obj in app.objects() if obj["kind"] != "Namespace"]

    result = applyer.prune(refs, service="web")

    assert result.ok, result.output
    assert sorted(result.pruned) == sorted(refs)
    lines = result.output.splitlines()
    assert lines[0] == f"widget.{app.group}/w1 deleted"
    assert lines[-2] == f"customresourcedefinition.apiextensions.k8s.io/{app.crd_name} deleted"


@pytest.mark.kube
def test_two_hundred_objects_are_applied_concurrently(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_flight, most = 0, 0
    lock = threading.Lock()
    request = KubeApi.request

    def counting(self: KubeApi, *args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            return request(self, *args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(KubeApi, "request", counting)
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"cm-{i:03}", "namespace": kube_namespace, "labels": labels()},
         "data": {"index": str(i)}}
        for i in range(200)
    ]  # fmt: skip

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert output.splitlines()[-1].startswith("200 objects applied in ")
    assert 1 < most <= applyer.max_workers
    listed = kube_get(kube_api_client, f"/api/v1/namespaces/{kube_namespace}/configmaps")
    names = sorted(item["metadata"]["name"] for item in listed["items"])
    assert names == [f"cm-{i:03}" for i in range(200)]


def test_throttling_is_a_transient_error_carrying_retry_after(tmp_path: Path) -> None:
    """A 429 cannot be provoked on demand from the test server; a loopback HTTP server that
    answers every request with one stands in for an overloaded API server."""

    class Throttled(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # discovery answers; the apply itself is throttled
            body = json.dumps(
                {
                    "kind": "APIResourceList",
                    "groupVersion": "v1",
                    "resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PATCH(self) -> None:
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Type", "application/json")
            body = b'{"kind":"Status","message":"Too many requests, please try again later."}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    try:
        applyer = KubernetesApplyer(kubeconfig=str(kubeconfig))
        with pytest.raises(TransientApplyError) as caught:
            applyer.apply(to_yaml([
                {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "x", "namespace": "default"}},
            ]))  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()

    assert caught.value.retry_after == 7
    assert "Too many requests" in str(caught.value)


def test_without_kubeconfig_outside_a_cluster_install_explains_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    ok, message = KubernetesApplyer().install()

    assert not ok
    assert message.startswith("cannot load in-cluster service account: ")
