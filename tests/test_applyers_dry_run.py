"""Validate before apply, against the real kube-apiserver: the kubernetes applyer dry-runs
every object first and applies nothing unless all pass; what it reports as applied is
exactly what reached the cluster; create-only objects are created when missing only."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import KubeApi
from syncworker.applyers.kubernetes import KubernetesApplyer
from syncworker.kube.labels import CREATE_ONLY_ANNOTATION
from syncworker.kube.refs import ObjectRef
from tests.support.kubeenv import KubeTestEnv
from tests.test_applyers_kubernetes import Sent, kube_get, labels, to_yaml

pytestmark = pytest.mark.kube
MiB = 1024 * 1024


@pytest.fixture
def applyer(kube_env: KubeTestEnv) -> Iterator[KubernetesApplyer]:
    applyer = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))
    yield applyer
    applyer.close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    """Every request the applyer makes, recorded by hooking our own ``KubeApi.request``."""
    log: list[Sent] = []
    request = KubeApi.request

    def recording(self: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
        log.append(Sent(method, path, dict(kwargs.get("query") or {}), ""))
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(KubeApi, "request", recording)
    return log


def meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "labels": labels()}
    if namespace:
        found["namespace"] = namespace
    return found


def config_map(name: str, namespace: str, **data: Any) -> dict[str, Any]:
    data = data or {"greeting": "hello"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(name, namespace),
        "data": data,
    }


def deployment(name: str, namespace: str, api_version: str = "apps/v1") -> dict[str, Any]:
    app = {"app": name}
    pod = {"metadata": {"labels": app}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    spec = {"replicas": 1, "selector": {"matchLabels": app}, "template": pod}
    return {"apiVersion": api_version, "kind": "Deployment", "metadata": meta(name, namespace),
            "spec": spec}  # fmt: skip


def service(name: str, namespace: str, cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace), "spec": spec}


def namespace_object(name: str, **annotations: str) -> dict[str, Any]:
    metadata = meta(name)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def widget_crd(group: str, *, with_colour: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {"size": {"type": "integer"}}
    if with_colour:
        properties["colour"] = {"type": "string"}
    spec_schema = {"type": "object", "properties": properties}
    schema = {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}}
    names = {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"}
    version = {"name": "v1", "served": True, "storage": True, "schema": schema}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": meta(f"widgets.{group}"),
            "spec": {"group": group, "scope": "Namespaced", "names": names,
                     "versions": [version]}}  # fmt: skip


def widget(group: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": meta("w1", namespace),
            "spec": spec}  # fmt: skip


def good_objects(ns: str) -> list[dict[str, Any]]:
    return [config_map("good-config", ns), deployment("good-web", ns), service("good-web", ns)]


def path_of(obj: dict[str, Any]) -> str:
    plural = {"ConfigMap": "configmaps", "Deployment": "deployments", "Service": "services",
              "Namespace": "namespaces", "Pod": "pods"}[obj["kind"]]  # fmt: skip
    meta = obj["metadata"]
    root = "api/v1" if obj["apiVersion"] == "v1" else f"apis/{obj['apiVersion']}"
    where = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"/{root}{where}/{plural}/{meta['name']}"


@dataclass(frozen=True)
class BadInput:
    """Objects the server refuses (after good ones) and what the failure must say."""

    objects: Callable[[str], list[dict[str, Any]]]
    says: Callable[[str], str]
    #: Also in the message, when the server's words come after a preamble.
    mentions: str = ""
    #: The bundle's own CRD, the only thing applied before the rejection.
    brings_crd: bool = False


GROUP = f"t{uuid.uuid4().hex[:8]}.example.com"
BAD_INPUTS = {
    "a name with capitals": BadInput(
        lambda ns: [config_map("Bad-Name", ns)],
        lambda ns: f'ConfigMap {ns}/Bad-Name: ConfigMap "Bad-Name" is invalid: metadata.name',
    ),
    "a kind whose CRD is not installed": BadInput(
        lambda ns: [
            {"apiVersion": "nowhere.example.com/v1", "kind": "Ghost", "metadata": meta("boo", ns)}
        ],
        lambda ns: (
            f"Ghost {ns}/boo: the server does not serve kind Ghost in nowhere.example.com/v1"
        ),
    ),
    "apps/v1 written as v1": BadInput(
        lambda ns: [deployment("wrong-group", ns, api_version="v1")],
        lambda ns: f"Deployment {ns}/wrong-group: the server does not serve kind Deployment in v1",
    ),
    "a removed API version": BadInput(
        lambda ns: [deployment("old", ns, api_version="extensions/v1beta1")],
        lambda ns: (
            f"Deployment {ns}/old: the server does not serve kind Deployment in extensions/v1beta1"
        ),
    ),
    "an integer in a ConfigMap's data": BadInput(
        lambda ns: [config_map("count", ns, replicas=3)],
        lambda ns: f"ConfigMap {ns}/count: failed to create typed patch object",
        ".data.replicas: expected string",
    ),
    "an unknown field": BadInput(
        lambda ns: [{**config_map("typo", ns), "dta": {"a": "b"}}],
        lambda ns: f"ConfigMap {ns}/typo: failed to create typed patch object",
        ".dta: field not declared in schema",
    ),
    "a Pod without containers": BadInput(
        lambda ns: [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "empty", "namespace": ns},
                "spec": {"containers": []},
            }
        ],
        lambda ns: f'Pod {ns}/empty: Pod "empty" is invalid: spec.containers: Required value',
    ),
    "a ConfigMap over 1 MiB": BadInput(
        lambda ns: [config_map("big", ns, blob="x" * (MiB + 1))],
        lambda ns: f'ConfigMap {ns}/big: ConfigMap "big" is invalid: []: Too long',
    ),
    "a namespace that does not exist": BadInput(
        lambda ns: [deployment("web", f"{ns}-gone"), service("web", f"{ns}-gone")],
        lambda ns: (
            f"namespace '{ns}-gone' does not exist; needed by Deployment {ns}-gone/web, "
            f"Service {ns}-gone/web"
        ),
    ),
    "a CRD and its custom resource with a bad field": BadInput(
        lambda ns: [widget_crd(GROUP), widget(GROUP, ns, size=3, colour="red")],
        lambda ns: f"Widget {ns}/w1: failed to create typed patch object",
        ".spec.colour: field not declared in schema",
        brings_crd=True,
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_a_bundle_the_server_rejects_fails_naming_the_object_and_applies_nothing(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient, case: str
) -> None:
    bad = BAD_INPUTS[case]
    good = good_objects(kube_namespace)
    bundle = [*good, *bad.objects(kube_namespace)]  # the worst place: after good objects

    report = applyer.apply_bundle(to_yaml(bundle))

    assert not report.ok
    assert report.output.startswith(bad.says(kube_namespace)), report.output
    assert bad.mentions in report.output.splitlines()[0]
    assert "failed: the server's dry run rejected" in report.output.splitlines()[-1]
    assert [kube_get(kube_api_client, path_of(obj)) for obj in good] == [None] * len(good)
    crd = ObjectRef.of(widget_crd(GROUP))
    assert report.applied == ([crd] if bad.brings_crd else [])


def test_every_rejected_object_is_named_not_only_the_first(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    ns = kube_namespace
    bundle = [*good_objects(ns), config_map("Upper", ns), config_map("count", ns, n=1),
              deployment("web", f"{ns}-gone")]  # fmt: skip

    ok, output = applyer.apply(to_yaml(bundle))

    assert not ok
    lines = output.splitlines()
    assert lines[0].startswith(f"ConfigMap {ns}/Upper: ")
    assert lines[1].startswith(f"ConfigMap {ns}/count: ")
    assert lines[2] == f"namespace '{ns}-gone' does not exist; needed by Deployment {ns}-gone/web"
    assert lines[3].startswith(
        "failed: the server's dry run rejected 3 of 6 objects; 0 applied, 0 unchanged in "
    )


def test_objects_of_a_new_namespace_are_validated_once_it_exists_and_nothing_else_is_applied(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    new = f"{kube_namespace}-new"
    bundle = [namespace_object(new), *good_objects(new), config_map("Bad", new)]

    report = applyer.apply_bundle(to_yaml(bundle))

    assert not report.ok
    assert report.output.startswith(f"ConfigMap {new}/Bad: "), report.output
    assert report.applied == [ObjectRef("v1", "Namespace", "", new)]
    assert kube_get(kube_api_client, f"/api/v1/namespaces/{new}") is not None
    assert [kube_get(kube_api_client, path_of(obj)) for obj in bundle[1:]] == [None] * 4


def test_a_custom_resource_is_validated_against_the_crd_of_its_own_bundle(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    """The new field exists only in the new version of the CRD: checked against the old
    one, the custom resource would be refused."""
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    assert applyer.apply(to_yaml([widget_crd(group), widget(group, kube_namespace, size=1)]))[0]

    ok, output = applyer.apply(
        to_yaml([widget_crd(group, with_colour=True), widget(group, kube_namespace, colour="red")])
    )

    assert ok, output
    path = f"/apis/{group}/v1/namespaces/{kube_namespace}/widgets/w1"
    assert kube_get(kube_api_client, path)["spec"] == {"colour": "red"}


def free_cluster_ip(core: client.CoreV1Api) -> str:
    """An address of the test server's service range (10.0.0.0/16) no Service holds."""
    taken = {s.spec.cluster_ip for s in core.list_service_for_all_namespaces().items if s.spec}
    return next(f"10.0.0.{i}" for i in range(250, 10, -1) if f"10.0.0.{i}" not in taken)


def test_a_failure_after_the_dry_run_reports_exactly_what_reached_the_cluster(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    """Two Services asking for the same cluster IP each pass their dry run (the address is
    free); applied, the second is refused. The ConfigMap of an earlier phase is there."""
    ns, core = kube_namespace, client.CoreV1Api(kube_api_client)
    address = free_cluster_ip(core)
    bundle = [config_map("orphan-x", ns), service("one", ns, address), service("two", ns, address)]

    report = applyer.apply_bundle(to_yaml(bundle))

    assert not report.ok
    assert "provided IP is already allocated" in report.output
    assert report.output.splitlines()[-1].startswith("failed: 2 of 3 objects applied")
    there = [ObjectRef.of(obj) for obj in bundle if kube_get(kube_api_client, path_of(obj))]
    assert len(there) == 2
    assert sorted(report.applied) == sorted(there)


def test_a_transient_error_mid_apply_carries_what_reached_the_cluster(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server going away between two phases, made by failing our own request layer
    on the Deployment's real apply (the dry runs pass)."""
    ns = kube_namespace
    bundle = good_objects(ns)
    request = KubeApi.request

    def gone_at_the_deployment(self: KubeApi, method: str, path: str, **kwargs: Any) -> Any:
        real = method == "PATCH" and "dryRun" not in (kwargs.get("query") or {})
        if real and "/deployments/" in path:
            raise TransientApplyError(f"{path}: the server went away")
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(KubeApi, "request", gone_at_the_deployment)

    with pytest.raises(TransientApplyError) as caught:
        applyer.apply_bundle(to_yaml(bundle))

    # The Service shares the Deployment's phase: sent at the same time, it may be there.
    there = [ObjectRef.of(obj) for obj in bundle if kube_get(kube_api_client, path_of(obj))]
    assert ObjectRef.of(bundle[0]) in there and ObjectRef.of(bundle[1]) not in there
    assert sorted(caught.value.applied) == sorted(there)
    assert f"{len(there)} of 3 objects applied" in str(caught.value)


def create_only_namespace(name: str) -> dict[str, Any]:
    return namespace_object(name, **{CREATE_ONLY_ANNOTATION: "true"})


def test_a_create_only_namespace_is_created_when_missing_and_never_reported_as_applied(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    new = f"{kube_namespace}-made"
    bundle = [create_only_namespace(new), config_map("settings", new)]

    report = applyer.apply_bundle(to_yaml(bundle))

    assert report.ok, report.output
    assert report.output.splitlines()[:2] == [f"namespace/{new} created",
                                               "configmap/settings serverside-applied"]  # fmt: skip
    assert report.create_only == [ObjectRef("v1", "Namespace", "", new)]
    assert report.applied == [ObjectRef.of(bundle[1])]
    made = kube_get(kube_api_client, f"/api/v1/namespaces/{new}")
    assert made["metadata"]["labels"].items() >= labels().items()
    assert made["metadata"]["annotations"][CREATE_ONLY_ANNOTATION] == "true"


def test_an_existing_namespace_is_left_exactly_as_it_was(
    applyer: KubernetesApplyer,
    kube_namespace: str,
    kube_api_client: client.ApiClient,
    sent: list[Sent],
) -> None:
    """kube_namespace carries a foreign label (the test fixture's), no label of ours."""
    path = f"/api/v1/namespaces/{kube_namespace}"
    before = kube_get(kube_api_client, path)["metadata"]
    bundle = [create_only_namespace(kube_namespace), config_map("settings", kube_namespace)]

    report = applyer.apply_bundle(to_yaml(bundle))

    assert report.ok, report.output
    assert report.output.splitlines()[0] == f"namespace/{kube_namespace} exists, left as it is"
    after = kube_get(kube_api_client, path)["metadata"]
    assert after == before
    assert report.applied == [ObjectRef.of(bundle[1])]
    # One dry-run POST found it; nothing else was sent for it.
    namespace_requests = [s for s in sent if s.path in (path, "/api/v1/namespaces")]
    assert [(s.method, s.query.get("dryRun")) for s in namespace_requests] == [("POST", "All")]


def test_a_create_only_object_the_server_refuses_fails_the_dry_run(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    bundle = [config_map("settings", kube_namespace), create_only_namespace("Not-A-Name")]

    report = applyer.apply_bundle(to_yaml(bundle))

    assert not report.ok
    assert report.output.startswith('Namespace Not-A-Name: Namespace "Not-A-Name" is invalid')
    assert kube_get(kube_api_client, path_of(bundle[0])) is None
