"""The diff of a bundle against the cluster: the pure comparison, and the kubernetes
applyer's server-side dry run against the real kube-apiserver (created, changed with a
unified diff naming the fields, unchanged, Secret values masked, fields another manager
owns left out)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from kubernetes import client

from syncworker.applyers.kubediff import (
    CHANGED,
    CHANGED_MASK,
    CREATED,
    UNCHANGED,
    changed_paths,
    compare,
    normalise,
)
from syncworker.applyers.kubernetes import KubernetesApplyer
from syncworker.kube.labels import COMMIT_ANNOTATION
from syncworker.kube.refs import ObjectRef
from syncworker.render.secrets import MASK
from tests.support.kubeenv import KubeTestEnv

SECRET_VALUE = "s3cr3t-value-never-shown"


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(o) for o in objects)


def configmap(ns: str, value: str, name: str = "settings", commit: str = "c1") -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "annotations": {COMMIT_ANNOTATION: commit}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"color": value}}


def deployment(ns: str, image: str = "nginx:1") -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {  # no replicas: an HPA owns them
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def secret(ns: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": ns},
        "stringData": {"password": value},
    }


# -- the pure part ------------------------------------------------------------------------


def test_normalise_drops_server_bookkeeping_status_and_our_commit_annotation() -> None:
    live = configmap("ns", "blue")
    live["metadata"].update(
        resourceVersion="7", uid="u", generation=2, creationTimestamp="t", managedFields=[{}]
    )
    live["status"] = {"x": 1}
    assert normalise(live) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "ns"},
        "data": {"color": "blue"},
    }


def test_changed_paths_name_each_differing_leaf() -> None:
    before = {"a": {"b": 1, "c": [1]}, "d": 1}
    after = {"a": {"b": 2, "c": [1]}, "e": None}
    assert changed_paths(before, after) == ["a.b", "d", "e"]


def test_a_changed_secret_shows_masked_values_and_says_which_changed() -> None:
    ref = ObjectRef("v1", "Secret", "ns", "creds")
    live = {**secret("ns", ""), "data": {"password": "b2xk", "user": "dQ=="}}
    desired = {**secret("ns", ""), "data": {"password": "bmV3", "user": "dQ=="}}
    result = compare(ref, live, desired)
    assert (result.action, result.fields) == (CHANGED, ["data.password"])
    assert f"-  password: {MASK}" in result.diff
    assert f"+  password: {CHANGED_MASK}" in result.diff
    assert f"  user: {MASK}" in result.diff
    assert "b2xk" not in result.diff and "bmV3" not in result.diff


# -- against the kube-apiserver -----------------------------------------------------------


@pytest.fixture
def applyer(kube_env: KubeTestEnv, kube_namespace: str) -> KubernetesApplyer:
    return KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig), namespace=kube_namespace)


@pytest.mark.kube
def test_a_missing_object_is_created_and_an_applied_one_unchanged(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    bundle = to_yaml([configmap(kube_namespace, "blue"), deployment(kube_namespace)])
    before = applyer.diff(bundle)
    assert [(d.ref.kind, d.action) for d in before] == [
        ("ConfigMap", CREATED),
        ("Deployment", CREATED),
    ]
    assert "+  color: blue" in before[0].diff
    assert applyer.apply_bundle(bundle).ok
    assert [d.action for d in applyer.diff(bundle)] == [UNCHANGED, UNCHANGED]


@pytest.mark.kube
def test_a_hand_edit_and_a_new_commit_are_changes_naming_the_fields(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    assert applyer.apply_bundle(to_yaml([configmap(kube_namespace, "blue")])).ok
    core = client.CoreV1Api(kube_api_client)
    core.patch_namespaced_config_map("settings", kube_namespace, {"data": {"color": "red"}})

    (by_hand,) = applyer.diff(to_yaml([configmap(kube_namespace, "blue")]))
    assert (by_hand.action, by_hand.fields) == (CHANGED, ["data.color"])
    assert "-  color: red\n+  color: blue\n" in by_hand.diff
    # Only the commit annotation differs from the live object: that is no change.
    core.patch_namespaced_config_map("settings", kube_namespace, {"data": {"color": "blue"}})
    (same,) = applyer.diff(to_yaml([configmap(kube_namespace, "blue", commit="c2")]))
    assert same.action == UNCHANGED
    live = core.read_namespaced_config_map("settings", kube_namespace).data
    assert live == {"color": "blue"}, "a diff changes nothing"


@pytest.mark.kube
def test_fields_another_manager_owns_are_no_difference(
    applyer: KubernetesApplyer, kube_namespace: str, kube_api_client: client.ApiClient
) -> None:
    assert applyer.apply_bundle(to_yaml([deployment(kube_namespace)])).ok
    # What an HPA does: another field manager writes spec.replicas through /scale.
    apps = client.AppsV1Api(kube_api_client)
    apps.patch_namespaced_deployment_scale(
        "web", kube_namespace, {"spec": {"replicas": 5}}, field_manager="hpa-like"
    )
    assert apps.read_namespaced_deployment("web", kube_namespace).spec.replicas == 5

    (result,) = applyer.diff(to_yaml([deployment(kube_namespace)]))
    assert result.action == UNCHANGED, result.diff
    (image,) = applyer.diff(to_yaml([deployment(kube_namespace, image="nginx:2")]))
    assert image.action == CHANGED
    assert image.fields == ["spec.template.spec.containers"]
    assert "replicas" not in "".join(
        line for line in image.diff.splitlines() if line[:1] in "+-" and line[:3] not in "---+++"
    )


@pytest.mark.kube
def test_a_secret_diff_never_holds_its_value(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    assert applyer.apply_bundle(to_yaml([secret(kube_namespace, "old-" + SECRET_VALUE)])).ok
    (result,) = applyer.diff(to_yaml([secret(kube_namespace, SECRET_VALUE)]))
    assert (result.action, result.fields) == (CHANGED, ["data.password"])
    assert CHANGED_MASK in result.diff
    for value in (SECRET_VALUE, "old-" + SECRET_VALUE):
        encoded = base64.b64encode(value.encode()).decode()
        assert value not in result.diff and encoded not in result.diff
    (created,) = applyer.diff(
        to_yaml(
            [
                secret(kube_namespace, SECRET_VALUE)
                | {"metadata": {"name": "other", "namespace": kube_namespace}}
            ]
        )
    )
    assert created.action == CREATED and MASK in created.diff
    assert SECRET_VALUE not in created.diff


@pytest.mark.kube
def test_objects_in_a_namespace_the_bundle_brings_are_created(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    ns = f"{kube_namespace}-new"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    result = applyer.diff(to_yaml([namespace, configmap(ns, "blue")]))
    assert [(d.ref.kind, d.action) for d in result] == [
        ("Namespace", CREATED),
        ("ConfigMap", CREATED),
    ]


@pytest.mark.kube
def test_a_missing_object_shows_what_git_says_not_the_defaults_the_server_would_add(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    # Argo CD's guestbook Service and Deployment: no clusterIP, no container defaults.
    ui = {"app": "guestbook-ui"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "guestbook-ui", "namespace": kube_namespace},
        "spec": {"ports": [{"port": 80, "targetPort": 80}], "selector": ui},
    }
    workload = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "guestbook-ui", "namespace": kube_namespace},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": ui},
            "template": {
                "metadata": {"labels": ui},
                "spec": {
                    "containers": [
                        {
                            "name": "guestbook-ui",
                            "image": "gcr.io/heptio-images/ks-guestbook-demo:0.2",
                            "ports": [{"containerPort": 80}],
                        }
                    ]
                },
            },
        },
    }
    hidden = secret(kube_namespace, SECRET_VALUE)
    shown = applyer.diff(to_yaml([service, workload, hidden]))
    assert [d.action for d in shown] == [CREATED, CREATED, CREATED]
    for diff, sent in zip(shown[:2], (service, workload), strict=True):
        lines = diff.diff.splitlines(True)
        added = "".join(line[1:] for line in lines if line[:1] == "+" and line[:3] != "+++")
        assert yaml.safe_load(added) == sent
    for default in ("clusterIP", "sessionAffinity", "terminationMessagePath", "dnsPolicy"):
        assert default not in shown[0].diff + shown[1].diff
    # Masked as Git has it (stringData), never the value nor its base64.
    assert "stringData:\n+  password: (hidden)" in shown[2].diff
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    assert SECRET_VALUE not in shown[2].diff and encoded not in shown[2].diff
