"""KubectlApplyer: the kubectl built with the test server, against that server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubectl import KubectlApplyer
from syncworker.kube.kinds import CRD_KIND
from syncworker.kube.labels import CREATE_ONLY_ANNOTATION
from syncworker.kube.refs import ObjectRef
from tests.support.kubeenv import KubeTestEnv, pinned_version
from tests.test_applyers_dry_run import (
    BAD_INPUTS,
    GROUP,
    config_map,
    create_only_namespace,
    free_cluster_ip,
    good_objects,
    path_of,
    service,
    widget_crd,
)
from tests.test_applyers_kubernetes import (
    AppBundle,
    closed_port_kubeconfig,
    kube_get,
    labels,
    to_yaml,
)

pytestmark = pytest.mark.kube


@pytest.fixture
def applyer(kube_env: KubeTestEnv) -> KubectlApplyer:
    return KubectlApplyer(kubeconfig=str(kube_env.kubeconfig), kubectl=str(kube_env.kubectl))


def test_install_reports_client_and_server_versions(applyer: KubectlApplyer) -> None:
    ok, message = applyer.install()

    assert ok, message
    assert message == f"kubectl {pinned_version()}, server {pinned_version()}"


def test_a_bundle_in_any_order_is_applied_and_applying_it_again_changes_nothing(
    applyer: KubectlApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    app = AppBundle(kube_namespace)

    ok, output = applyer.apply(app.yaml())

    assert ok, output
    assert f"namespace/{app.namespace} serverside-applied" in output
    assert f"widget.{app.group}/w1 serverside-applied" in output
    assert output.count(f"customresourcedefinition.apiextensions.k8s.io/{app.crd_name}") == 1
    before = app.resource_versions(kube_api_client)
    deployment = app.read(kube_api_client, "deployment")
    managers = {entry["manager"] for entry in deployment["metadata"]["managedFields"]}
    assert "simple-gitops" in managers

    ok, output = applyer.apply(app.yaml())

    assert ok, output
    assert app.resource_versions(kube_api_client) == before


def test_an_invalid_object_fails_with_kubectl_output(
    applyer: KubectlApplyer, kube_namespace: str
) -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": kube_namespace},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }  # fmt: skip

    ok, output = applyer.apply(to_yaml([broken]))

    assert not ok
    assert '"broken" is invalid' in output
    assert "spec.selector" in output


def test_an_unreachable_server_is_a_transient_error(kube_env: KubeTestEnv, tmp_path: Path) -> None:
    applyer = KubectlApplyer(
        kubeconfig=str(closed_port_kubeconfig(kube_env, tmp_path)), kubectl=str(kube_env.kubectl)
    )
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}

    with pytest.raises(TransientApplyError):
        applyer.apply(to_yaml([config]))


def test_prune_deletes_only_objects_labelled_for_the_service(
    applyer: KubectlApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    ns = kube_namespace
    core = client.CoreV1Api(kube_api_client)

    def config_map(name: str, service: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if service:
            meta["labels"] = labels(service)
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": labels("web")},
        "spec": {"selector": {"matchLabels": {"app": "w"}},
                 "template": {"metadata": {"labels": {"app": "w"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }  # fmt: skip
    ok, output = applyer.apply(
        to_yaml([config_map("ours", "web"), config_map("unlabelled", None),
                 config_map("theirs", "other"), deployment])
    )  # fmt: skip
    assert ok, output
    refs = [
        ObjectRef("v1", "ConfigMap", ns, "ours"),
        ObjectRef("v1", "ConfigMap", ns, "unlabelled"),
        ObjectRef("v1", "ConfigMap", ns, "theirs"),
        ObjectRef("v1", "ConfigMap", ns, "already-gone"),
        ObjectRef("apps/v1", "Deployment", ns, "web"),
        ObjectRef("nowhere.example.com/v1", "Ghost", ns, "boo"),
    ]

    result = applyer.prune(refs, service="web")

    assert result.ok, result.output
    assert sorted(result.pruned) == sorted([refs[0], refs[3], refs[4], refs[5]])
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("ours", ns)
    assert gone.value.status == 404
    with pytest.raises(ApiException):
        client.AppsV1Api(kube_api_client).read_namespaced_deployment("web", ns)
    core.read_namespaced_config_map("unlabelled", ns)
    core.read_namespaced_config_map("theirs", ns)
    assert f"ConfigMap {ns}/theirs left alone: not labelled as web's" in result.output


def test_install_fails_when_the_server_is_unreachable(
    kube_env: KubeTestEnv, tmp_path: Path
) -> None:
    kubeconfig = closed_port_kubeconfig(kube_env, tmp_path)
    applyer = KubectlApplyer(kubeconfig=str(kubeconfig), kubectl=str(kube_env.kubectl))

    ok, message = applyer.install()

    assert not ok
    port = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"].rsplit(":")[-1]
    assert f"127.0.0.1:{port} was refused" in message


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_a_bundle_the_server_rejects_fails_naming_the_object_and_applies_nothing(
    applyer: KubectlApplyer, kube_namespace: str, kube_api_client: client.ApiClient, case: str
) -> None:
    bad = BAD_INPUTS[case]
    good = good_objects(kube_namespace)
    refused = [obj for obj in bad.objects(kube_namespace) if obj["kind"] != CRD_KIND]

    report = applyer.apply_bundle(to_yaml([*good, *bad.objects(kube_namespace)]))

    assert not report.ok
    lines = report.output.splitlines()
    if case == "a namespace that does not exist":
        assert lines[0] == bad.says(kube_namespace)
    else:
        named = ", ".join(str(ObjectRef.of(obj)) for obj in refused)
        assert f"rejected by the server's dry run: {named}" in lines, report.output
    assert lines[-1].startswith("failed: the server's dry run rejected the bundle; ")
    assert [kube_get(kube_api_client, path_of(obj)) for obj in good] == [None] * len(good)
    crd = ObjectRef.of(widget_crd(GROUP))
    assert report.applied == ([crd] if bad.brings_crd else [])


def test_kubectl_reports_exactly_what_reached_the_cluster_when_an_apply_fails(
    applyer: KubectlApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    """As for the kubernetes applyer: the second Service's address is taken by the first
    only when they are applied, after both passed the dry run."""
    ns, core = kube_namespace, client.CoreV1Api(kube_api_client)
    address = free_cluster_ip(core)
    bundle = [config_map("orphan-x", ns), service("one", ns, address), service("two", ns, address)]

    report = applyer.apply_bundle(to_yaml(bundle))

    assert not report.ok
    assert "provided IP is already allocated" in report.output
    there = [ObjectRef.of(obj) for obj in bundle if kube_get(kube_api_client, path_of(obj))]
    assert len(there) == 2
    assert sorted(report.applied) == sorted(there)


def test_kubectl_creates_a_create_only_namespace_and_leaves_an_existing_one_alone(
    applyer: KubectlApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    new, path = f"{kube_namespace}-made", f"/api/v1/namespaces/{kube_namespace}"
    before = kube_get(kube_api_client, path)["metadata"]
    bundle = [create_only_namespace(new), config_map("a", new),
              create_only_namespace(kube_namespace), config_map("b", kube_namespace)]  # fmt: skip

    report = applyer.apply_bundle(to_yaml(bundle))

    assert report.ok, report.output
    assert f"namespace/{new} created" in report.output.splitlines()
    assert f"namespace/{kube_namespace} exists, left as it is" in report.output.splitlines()
    assert kube_get(kube_api_client, path)["metadata"] == before
    made = kube_get(kube_api_client, f"/api/v1/namespaces/{new}")["metadata"]
    assert made["annotations"][CREATE_ONLY_ANNOTATION] == "true"
    assert sorted(report.create_only) == sorted(ObjectRef.of(bundle[i]) for i in (0, 2))
    assert sorted(report.applied) == sorted(ObjectRef.of(bundle[i]) for i in (1, 3))
