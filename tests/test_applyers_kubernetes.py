"""KubernetesApplyer against the real kube-apiserver of the test bed."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from syncworker.applyers import applied
from syncworker.applyers.applied import key_of, list_live
from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import KubeApi, Resource
from syncworker.applyers.kubernetes import GET_AT_MOST, KubernetesApplyer
from syncworker.kube.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef
from tests.support.kube_throttle import Throttle
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
    assert lines[-1].startswith("6 objects applied, 0 unchanged in ")
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
def test_an_invalid_object_fails_the_dry_run_and_nothing_is_applied(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
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

    report = applyer.apply_bundle(to_yaml([ok_config, broken]))

    assert not report.ok
    first = report.output.splitlines()[0]
    assert first.startswith(f"Deployment {ns}/broken: ")
    assert "spec.selector" in first
    assert report.output.splitlines()[-1].startswith(
        "failed: the server's dry run rejected 1 of 2 objects; 0 applied, 0 unchanged in "
    )
    assert report.applied == []
    assert kube_get(kube_api_client, f"/api/v1/namespaces/{ns}/configmaps/fine") is None


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
    assert applyer.remembered.get(key_of(refs[0])) is not None

    result = applyer.prune(refs, service="web")

    assert result.ok, result.output
    assert applyer.remembered.get(key_of(refs[0])) is None
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
    assert output.splitlines()[-1].startswith("200 objects applied, 0 unchanged in ")
    assert 1 < most <= applyer.max_workers
    listed = kube_get(kube_api_client, f"/api/v1/namespaces/{kube_namespace}/configmaps")
    names = sorted(item["metadata"]["name"] for item in listed["items"])
    assert names == [f"cm-{i:03}" for i in range(200)]


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: dict[str, str]
    accept: str


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    """Every request the applyers make, recorded by hooking our own ``KubeApi.request``."""
    log: list[Sent] = []
    request = KubeApi.request

    def recording(self: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
        query, accept = kwargs.get("query") or {}, kwargs.get("accept", "application/json")
        log.append(Sent(method, path, dict(query), accept))  # list.append is thread-safe
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(KubeApi, "request", recording)
    return log


PLURALS = {"Namespace": "namespaces", "ConfigMap": "configmaps", "Secret": "secrets",
           "Service": "services", "Deployment": "deployments"}  # fmt: skip


def object_path(obj: dict[str, Any]) -> str:
    """The API path of an object of the kinds ``service_objects`` uses."""
    meta, root = obj["metadata"], "api" if obj["apiVersion"] == "v1" else "apis"
    where = f"/namespaces/{meta['namespace']}" if "namespace" in meta else ""
    return f"/{root}/{obj['apiVersion']}{where}/{PLURALS[obj['kind']]}/{meta['name']}"


def display(obj: dict[str, Any]) -> str:
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


def service_objects(namespace: str) -> list[dict[str, Any]]:
    """One service spread over two namespaces: 12 objects of 7 (resource, namespace) pairs."""
    lab, app = labels(), {"app": "web"}
    objects: list[dict[str, Any]] = []
    for ns in (namespace, f"{namespace}-b"):
        objects += [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": lab}},
            *({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": f"settings-{i}", "namespace": ns, "labels": lab},
               "data": {"greeting": "hello", "index": str(i)}} for i in range(3)),
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "token", "namespace": ns, "labels": lab},
             "stringData": {"token": "s3cret"}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": ns, "labels": lab},
             "spec": {"selector": app, "ports": [{"port": 80}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "web", "namespace": ns, "labels": lab},
             "spec": {"replicas": 1, "selector": {"matchLabels": app},
                      "template": {"metadata": {"labels": app},
                                   "spec": {"containers": [{"name": "web",
                                                            "image": "nginx:1.27"}]}}}},
        ]  # fmt: skip
    return objects[:-2]  # the second namespace without its Service and Deployment


def live_versions(api_client: client.ApiClient, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """path -> (resourceVersion, uid) of every object, None for those not there."""
    versions: dict[str, Any] = {}
    for obj in objects:
        found = kube_get(api_client, object_path(obj))
        meta = found["metadata"] if found else None
        versions[object_path(obj)] = (meta["resourceVersion"], meta["uid"]) if meta else None
    return versions


def outcome(output: str) -> list[str]:
    """The object lines of an apply (not its summary), sorted."""
    return sorted(output.splitlines()[:-1])


def expected(objects: list[dict[str, Any]], *applied: dict[str, Any]) -> list[str]:
    """The sorted lines of an apply that applied ``applied`` and found the rest unchanged."""
    return sorted(
        f"{display(obj)} {'serverside-applied' if obj in applied else 'unchanged'}"
        for obj in objects
    )


def patched(sent: list[Sent]) -> list[str]:
    """The paths of the real applies (not the dry runs)."""
    return sorted(s.path for s in sent if s.method == "PATCH" and "dryRun" not in s.query)


def dry_run(sent: list[Sent]) -> list[str]:
    return sorted(s.path for s in sent if s.method == "PATCH" and s.query.get("dryRun") == "All")


@pytest.mark.kube
def test_a_resync_of_an_unchanged_bundle_patches_nothing_and_reads_each_object_once(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    sent: list[Sent],
) -> None:
    objects = service_objects(kube_namespace)
    ok, output = applyer.apply(to_yaml(objects))
    assert ok, output
    assert outcome(output) == expected(objects, *objects)
    before = live_versions(kube_api_client, objects)
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert outcome(output) == expected(objects)
    assert output.splitlines()[-1].startswith(f"0 objects applied, {len(objects)} unchanged in ")
    assert patched(sent) == dry_run(sent) == []
    assert live_versions(kube_api_client, objects) == before
    # A few objects of a kind per namespace: one metadata-only GET of each by name (an
    # index lookup for the apiserver, where a labelled LIST walks the whole kind).
    assert sorted(s.path for s in sent) == sorted(map(object_path, objects))
    for request in sent:
        assert (request.method, request.query) == ("GET", {})
        assert "as=PartialObjectMetadata;" in request.accept


@pytest.mark.kube
def test_many_unchanged_objects_of_a_kind_are_found_by_one_labelled_list(
    applyer: KubernetesApplyer, kube_namespace: str, sent: list[Sent]
) -> None:
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"cm-{i:02}", "namespace": kube_namespace, "labels": labels()},
         "data": {"index": str(i)}}
        for i in range(GET_AT_MOST + 1)
    ]  # fmt: skip
    assert applyer.apply(to_yaml(objects))[0]
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert outcome(output) == expected(objects)
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{SERVICE_LABEL}=web"
    assert [(s.method, s.path, s.query) for s in sent] == [
        (
            "GET",
            f"/api/v1/namespaces/{kube_namespace}/configmaps",
            {"labelSelector": selector, "limit": "500"},
        )
    ]
    assert "as=PartialObjectMetadataList" in sent[0].accept


@pytest.mark.kube
def test_a_field_changed_by_hand_is_taken_back_by_the_next_resync(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    sent: list[Sent],
) -> None:
    objects = service_objects(kube_namespace)
    assert applyer.apply(to_yaml(objects))[0]
    core = client.CoreV1Api(kube_api_client)
    core.patch_namespaced_config_map(
        "settings-1", kube_namespace, {"data": {"greeting": "hacked"}}, field_manager="kubectl-edit"
    )
    assert kube_get(kube_api_client, object_path(objects[2]))["data"]["greeting"] == "hacked"
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert outcome(output) == expected(objects, objects[2])
    assert patched(sent) == [object_path(objects[2])]
    assert dry_run(sent) == [], "one object to write: its apply is its validation"
    assert kube_get(kube_api_client, object_path(objects[2]))["data"]["greeting"] == "hello"
    # Our apply bumped the resourceVersion once more; that one is remembered.
    sent.clear()
    ok, output = applyer.apply(to_yaml(objects))
    assert ok, output
    assert patched(sent) == []


@pytest.mark.kube
def test_an_object_deleted_by_hand_is_created_again(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    sent: list[Sent],
) -> None:
    objects = service_objects(kube_namespace)
    assert applyer.apply(to_yaml(objects))[0]
    secret = objects[-1]  # the Secret of the second namespace
    before = live_versions(kube_api_client, [secret])[object_path(secret)]
    client.CoreV1Api(kube_api_client).delete_namespaced_secret("token", f"{kube_namespace}-b")
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert outcome(output) == expected(objects, secret)
    assert patched(sent) == [object_path(secret)]
    after = live_versions(kube_api_client, [secret])[object_path(secret)]
    assert after is not None and after[1] != before[1]


@pytest.mark.kube
def test_a_changed_object_of_the_bundle_is_applied_and_the_others_skipped(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    sent: list[Sent],
) -> None:
    objects = service_objects(kube_namespace)
    assert applyer.apply(to_yaml(objects))[0]
    before = live_versions(kube_api_client, objects)
    deployment = objects[6]
    assert deployment["kind"] == "Deployment"
    deployment["spec"]["replicas"] = 3
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert outcome(output) == expected(objects, deployment)
    assert output.splitlines()[-1].startswith(f"1 objects applied, {len(objects) - 1} unchanged")
    assert patched(sent) == [object_path(deployment)]
    assert dry_run(sent) == [], "one object to write: its apply is its validation"
    after = live_versions(kube_api_client, objects)
    assert after[object_path(deployment)] != before[object_path(deployment)]
    assert {p: v for p, v in after.items() if p != object_path(deployment)} == {
        p: v for p, v in before.items() if p != object_path(deployment)
    }
    assert kube_get(kube_api_client, object_path(deployment))["spec"]["replicas"] == 3


@pytest.mark.kube
def test_two_objects_to_write_are_dry_run_first_and_one_rejected_applies_neither(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    sent: list[Sent],
) -> None:
    objects = service_objects(kube_namespace)
    assert applyer.apply(to_yaml(objects))[0]
    settings, deployment = objects[1], objects[6]
    settings["data"]["greeting"] = "bonjour"
    deployment["spec"]["replicas"] = "three"  # rejected by the server
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert not ok
    assert str(ObjectRef.of(deployment)) in output
    assert dry_run(sent) == sorted([object_path(settings), object_path(deployment)])
    assert patched(sent) == []
    assert kube_get(kube_api_client, object_path(settings))["data"]["greeting"] == "hello"

    deployment["spec"]["replicas"] = 3
    sent.clear()
    ok, output = applyer.apply(to_yaml(objects))
    assert ok, output
    assert (
        patched(sent) == dry_run(sent) == sorted([object_path(settings), object_path(deployment)])
    )


@pytest.mark.kube
def test_a_single_object_to_write_in_a_missing_namespace_names_the_namespace(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    missing = f"{kube_namespace}-missing"
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "lonely", "namespace": missing, "labels": labels()}}  # fmt: skip

    ok, output = applyer.apply(to_yaml([config]))

    assert not ok
    assert f"namespace '{missing}' does not exist; needed by ConfigMap {missing}/lonely" in output


@pytest.mark.kube
def test_with_verify_unchanged_off_every_object_is_patched_every_time(
    kube_env: KubeTestEnv, kube_namespace: str, sent: list[Sent]
) -> None:
    applyer = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig), verify_unchanged=False)
    objects = service_objects(kube_namespace)
    try:
        assert applyer.apply(to_yaml(objects))[0]
        sent.clear()

        ok, output = applyer.apply(to_yaml(objects))
    finally:
        applyer.close()

    assert ok, output
    assert outcome(output) == expected(objects, *objects)
    assert patched(sent) == dry_run(sent) == sorted(map(object_path, objects))
    assert [s for s in sent if s.method != "PATCH"] == []
    assert len(applyer.remembered) == 0


@pytest.mark.kube
def test_unchanged_objects_are_listed_page_by_page(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    sent: list[Sent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(applied, "LIST_PAGE_SIZE", 4)
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"cm-{i:02}", "namespace": kube_namespace, "labels": labels()},
         "data": {"index": str(i)}}
        for i in range(10)
    ]  # fmt: skip
    assert applyer.apply(to_yaml(objects))[0]
    sent.clear()

    ok, output = applyer.apply(to_yaml(objects))

    assert ok, output
    assert outcome(output) == expected(objects)
    assert [s.method for s in sent] == ["GET"] * 3  # 4 + 4 + 2
    assert [s.query["limit"] for s in sent] == ["4"] * 3
    assert "continue" not in sent[0].query
    assert sent[1].query["continue"] and sent[2].query["continue"]


@pytest.mark.kube
def test_a_failed_patch_forgets_what_was_applied_before(
    kube_env: KubeTestEnv,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = service_objects(kube_namespace)
    with Throttle(kube_env, kube_namespace, verbs=("create", "patch")) as throttle:
        applyer = KubernetesApplyer(kubeconfig=str(throttle.kubeconfig))
        try:
            assert applyer.apply(to_yaml(objects))[0]
            key = key_of(ObjectRef.of(objects[1]))
            assert applyer.remembered.get(key) is not None
            client.CoreV1Api(kube_api_client).patch_namespaced_config_map(
                "settings-0",
                kube_namespace,
                {"data": {"greeting": "hacked"}},
                field_manager="kubectl-edit",
            )

            # The dry run passes; the apiserver then refuses the PATCH that would take
            # the field back (the throttle is held from the first real apply on).
            real_apply = KubernetesApplyer._apply

            def held_apply(self: KubernetesApplyer, *args: Any) -> bool:
                if not args[2]:  # no objects in this phase
                    return real_apply(self, *args)
                with throttle.held():
                    return real_apply(self, *args)

            monkeypatch.setattr(KubernetesApplyer, "_apply", held_apply)
            with pytest.raises(TransientApplyError, match="Too many requests"):
                applyer.apply(to_yaml(objects))

            assert applyer.remembered.get(key) is None
            assert applyer.remembered.get(key_of(ObjectRef.of(objects[2]))) is not None
        finally:
            applyer.close()


def test_a_server_that_refuses_metadata_lists_is_listed_in_full(tmp_path: Path) -> None:
    """An aggregated API server may refuse the metadata-only Accept header with 406; the
    kube-apiserver serves every list as metadata and cannot be made to refuse it. So a
    loopback server stands in for such an aggregated server: it answers 406 to the
    metadata Accept header and pages plain lists."""
    seen: list[tuple[str, str]] = []

    class Picky(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            accept = self.headers.get("Accept", "")
            seen.append((self.path, accept))
            if "PartialObjectMetadataList" in accept:
                self.reply(406, {"kind": "Status", "message": "only application/json"})
            elif "continue=" not in self.path:
                self.reply(200, {"kind": "WidgetList", "metadata": {"continue": "page2"},
                                 "items": [item("a", "1"), item("b", "2")]})  # fmt: skip
            else:
                self.reply(200, {"kind": "WidgetList", "metadata": {}, "items": [item("c", "3")]})

        def reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    def item(name: str, version: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": version, "uid": f"uid-{name}"},
                "spec": {"size": 1}}  # fmt: skip

    server = ThreadingHTTPServer(("127.0.0.1", 0), Picky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_port}"
    api = KubeApi(configuration, timeout=5)
    widgets = Resource("example.com/v1", "Widget", "widgets", namespaced=True)
    try:
        listing = list_live(api, widgets, "shop", "a=b")
    finally:
        api.close()
        server.shutdown()
        server.server_close()

    assert listing.problem is None
    assert listing.live == {"a": ("1", "uid-a"), "b": ("2", "uid-b"), "c": ("3", "uid-c")}
    assert [accept for _, accept in seen] == [applied.METADATA_LIST_ACCEPT] + [
        "application/json"
    ] * 2
    assert (
        seen[0][0] == "/apis/example.com/v1/namespaces/shop/widgets?labelSelector=a%3Db&limit=500"
    )
    assert seen[2][0].endswith("&continue=page2")


def test_the_memory_of_applied_objects_is_bounded_least_recently_applied_first() -> None:
    memory = applied.AppliedObjects(max_entries=3)
    keys = [("", "ConfigMap", "ns", f"cm-{i}") for i in range(4)]
    for key in keys[:3]:
        memory.remember(key, applied.Applied(b"d", "1", "u"))
    memory.remember(keys[0], applied.Applied(b"d", "2", "u"))  # applied again: newest now

    memory.remember(keys[3], applied.Applied(b"d", "1", "u"))

    assert len(memory) == 3
    assert memory.get(keys[1]) is None
    assert [memory.get(key) is not None for key in (keys[0], keys[2], keys[3])] == [True] * 3


def test_parsed_bundles_are_reused_and_bounded_by_object_count() -> None:
    bundles = applied.ParsedBundles(max_objects=3)
    one = to_yaml([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}])
    two = to_yaml([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}}
                   for n in ("b", "c")])  # fmt: skip

    first = bundles.manifests(one)
    assert bundles.manifests(one) is first
    bundles.manifests(two)
    assert len(bundles) == 2
    bundles.manifests(to_yaml([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]))

    assert len(bundles) == 2  # the least recently used bundle made room
    assert bundles.manifests(one) is not first
    with pytest.raises(ValueError, match=r"no metadata\.name"):
        bundles.manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")


def test_yaml_keys_json_cannot_sort_are_sent_and_values_it_cannot_carry_refused() -> None:
    applyer = KubernetesApplyer()  # never connects: a bundle is read before anything is sent
    ports = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp}\ndata: {8080: web, a: b}\n"
    binary = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bin}\ndata: {x: !!binary aGk=}"

    (manifest,) = applyer.parsed.manifests(ports)
    ok, output = applyer.apply(binary)

    assert json.loads(manifest.body)["data"] == {"8080": "web", "a": "b"}
    assert not ok
    assert output.startswith("invalid bundle: ConfigMap bin cannot be sent as JSON: ")


@pytest.mark.kube
def test_throttling_is_a_transient_error_carrying_retry_after(
    kube_env: KubeTestEnv, kube_namespace: str
) -> None:
    """The real apiserver throttles, through API Priority and Fairness (see
    tests/support/kube_throttle.py)."""
    meta = {"name": "x", "namespace": kube_namespace, "labels": labels()}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    with Throttle(kube_env, kube_namespace) as throttle:
        applyer = KubernetesApplyer(kubeconfig=str(throttle.kubeconfig))
        try:
            with throttle.held() as probe, pytest.raises(TransientApplyError) as caught:
                applyer.apply(to_yaml([configmap]))
            ok, output = applyer.apply(to_yaml([configmap]))  # released: served again
        finally:
            applyer.close()

    assert probe.status_code == 429
    assert caught.value.retry_after == float(probe.headers["Retry-After"]) >= 1
    assert "Too many requests" in str(caught.value)
    assert ok, output


def test_without_kubeconfig_outside_a_cluster_install_explains_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    ok, message = KubernetesApplyer().install()

    assert not ok
    assert message.startswith("cannot load in-cluster service account: ")


@pytest.mark.kube
def test_objects_the_inventory_never_held_are_not_read_before_their_dry_run(
    applyer: KubernetesApplyer, kube_namespace: str, sent: list[Sent]
) -> None:
    objects = service_objects(kube_namespace)

    report = applyer.apply_bundle(to_yaml(objects), held=set())

    assert report.ok, report.output
    assert [s for s in sent if s.method == "GET" and "/namespaces/" in s.path] == [], (
        "a new service's objects cost their dry run and apply, no read"
    )
    assert patched(sent) == dry_run(sent) == sorted(map(object_path, objects))


@pytest.mark.kube
def test_objects_the_inventory_holds_are_read_and_left_alone_by_a_new_worker(
    applyer: KubernetesApplyer, kube_env: KubeTestEnv, kube_namespace: str, sent: list[Sent]
) -> None:
    objects = service_objects(kube_namespace)
    assert applyer.apply(to_yaml(objects))[0]
    sent.clear()
    held = [ObjectRef.of(obj) for obj in objects]
    other = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))  # another worker
    try:
        report = other.apply_bundle(to_yaml(objects), held=held)
    finally:
        other.close()

    assert report.ok, report.output
    assert patched(sent) == [], "the dry runs matched the live objects: nothing written"
    reads = [s.path for s in sent if s.method == "GET" and "/namespaces/" in s.path]
    assert sorted(reads) == sorted(map(object_path, objects)), "each one read once, by name"
