"""Hook objects on a real kube-apiserver (no controllers needed: nothing here waits for a
Job to run): created by POST with the server's generated name, found again by a
redelivered task instead of created twice, replaced under BeforeHookCreation, deleted by
their policy, and refused with a message naming the object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from syncworker.applyers.base import HookError
from syncworker.applyers.kubernetes import KubernetesApplyer
from syncworker.kube.hooks import ARGO_DELETE_POLICY_ANNOTATION, ARGO_HOOK_ANNOTATION
from syncworker.kube.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_LABEL
from syncworker.kube.refs import ObjectRef
from syncworker.pipeline import hooks
from syncworker.render.bundle import dump_yaml
from syncworker.render.namespaces import namespace_to_create
from tests.support.kubeenv import KubeTestEnv

pytestmark = [pytest.mark.kube]


@pytest.fixture
def applyer(kube_env: KubeTestEnv) -> Iterator[KubernetesApplyer]:
    applyer = KubernetesApplyer(kubeconfig=str(kube_env.kubeconfig))
    yield applyer
    applyer.close()


def job(namespace: str, *, name: str = "", generate: str = "", policy: str = "") -> dict[str, Any]:
    annotations = {ARGO_HOOK_ANNOTATION: "PreSync"}
    if policy:
        annotations[ARGO_DELETE_POLICY_ANNOTATION] = policy
    meta: dict[str, Any] = {
        "namespace": namespace,
        "annotations": annotations,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SERVICE_LABEL: "shop"},
    }
    meta.update({"name": name} if name else {"generateName": generate})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "registry.invalid/db:1"}],
                }
            }
        },
    }


def configmap(namespace: str, **fields: Any) -> dict[str, Any]:
    meta = {"name": "settings", "namespace": namespace}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **fields}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def names(applyer: KubernetesApplyer, path: str) -> list[str]:
    """The names of the objects under ``path`` (a collection); [] when it is not found."""
    api, _, _ = applyer._connect()
    response = api.request("GET", path)
    if response.status != 200:
        return []
    return sorted(i["metadata"]["name"] for i in response.json()["items"])


def exists(applyer: KubernetesApplyer, name: str) -> bool:
    api, _, _ = applyer._connect()
    return api.request("GET", f"/api/v1/namespaces/{name}").status == 200


def jobs(applyer: KubernetesApplyer, namespace: str) -> list[tuple[str, str]]:
    """(name, uid) of every Job in the namespace."""
    api, _, _ = applyer._connect()
    items = api.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs").json()["items"]
    return sorted((i["metadata"]["name"], i["metadata"]["uid"]) for i in items)


def test_a_generate_name_hook_is_created_once_even_when_the_task_runs_twice(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    hook = job(kube_namespace, generate="db-migrate-")
    (first,) = hooks.start(applyer, 7, "PreSync", [hook])
    (again,) = hooks.start(applyer, 7, "PreSync", [hook])  # a redelivered apply
    assert first["name"].startswith("db-migrate-") and len(first["name"]) > len("db-migrate-")
    assert again["name"] == first["name"]
    assert [name for name, _ in jobs(applyer, kube_namespace)] == [first["name"]]
    assert (first["namespace"], first["result"]) == (kube_namespace, "running")


def test_before_hook_creation_deletes_the_earlier_deployments_hook_first(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    named, generated = job(kube_namespace, name="migrate"), job(kube_namespace, generate="seed-")
    hooks.start(applyer, 1, "PreSync", [named, generated])
    before = jobs(applyer, kube_namespace)
    records = hooks.start(applyer, 2, "PreSync", [named, generated])
    after = jobs(applyer, kube_namespace)
    # The named Job is a new object of the same name; the generated one a new name.
    assert len(before) == len(after) == 2
    assert set(before).isdisjoint(after)
    assert {r["name"] for r in records} == {name for name, _ in after}


def test_a_named_hook_without_before_hook_creation_that_exists_is_refused_naming_it(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    kept = job(kube_namespace, name="migrate", policy="HookSucceeded")
    hooks.start(applyer, 1, "PreSync", [kept])
    with pytest.raises(HookError) as caught:
        hooks.start(applyer, 2, "PreSync", [kept])
    assert f"Job {kube_namespace}/migrate" in str(caught.value)
    assert "already exists" in str(caught.value)


def test_a_hook_the_server_refuses_names_the_object_and_why(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    bad = job(kube_namespace, generate="db-migrate-")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"  # a Job refuses it
    good = job(kube_namespace, generate="seed-")
    with pytest.raises(hooks.StartFailed) as caught:
        hooks.start(applyer, 1, "PreSync", [good, bad])
    assert f"Job {kube_namespace}/db-migrate-" in str(caught.value)
    assert "restartPolicy" in str(caught.value)
    # The one created before it is recorded, so the failed deployment names it.
    (created,) = caught.value.records
    assert [name for name, _ in jobs(applyer, kube_namespace)] == [created["name"]]


def test_clean_up_deletes_only_what_the_policy_names(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    on_success = job(kube_namespace, name="a", policy="HookSucceeded")
    on_failure = job(kube_namespace, name="b", policy="HookFailed")
    records = hooks.start(applyer, 1, "PreSync", [on_success, on_failure])
    for record in records:
        record["result"] = hooks.SUCCEEDED
    cleaned = hooks.clean_up(applyer, records)
    assert [(r["name"], r["deleted"]) for r in cleaned] == [("a", True), ("b", False)]
    assert [name for name, _ in jobs(applyer, kube_namespace)] == ["b"]


def test_before_presync_hooks_only_the_missing_namespaces_are_created_and_all_is_validated(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    # The service's namespace (created for it) and one the bundle brings, both missing.
    own, brought = f"{kube_namespace}-own", f"{kube_namespace}-brought"
    objects = [
        namespace(brought),
        configmap(own, data={"a": "1"}),
        configmap(brought, data={"a": "1"}),
        configmap(kube_namespace, data={"a": "1"}),
        job(brought, generate="db-migrate-"),
    ]
    created = namespace_to_create(objects, own, service="shop")
    assert created is not None
    plan = hooks.plan_of(dump_yaml([created, *objects]))

    report = applyer.prepare_bundle(plan.yaml)
    assert report.ok, report.output
    assert exists(applyer, own) and exists(applyer, brought)
    # Nothing else is written: the ConfigMaps wait for the hooks.
    for ns in (own, brought, kube_namespace):
        assert names(applyer, f"/api/v1/namespaces/{ns}/configmaps") in ([], ["kube-root-ca.crt"])
    assert report.applied == [ObjectRef("v1", "Namespace", "", brought)]
    assert report.create_only == [ObjectRef("v1", "Namespace", "", own)]

    (record,) = hooks.start(applyer, 1, "PreSync", plan.of("PreSync"))
    assert record["namespace"] == brought
    done = applyer.apply_bundle(plan.yaml)
    assert done.ok, done.output
    assert "settings" in names(applyer, f"/api/v1/namespaces/{own}/configmaps")


def test_a_bundle_its_dry_run_rejects_creates_no_namespace_for_its_hooks(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    own = f"{kube_namespace}-own"
    bad = configmap(kube_namespace, data={"a": "1"}, spec={"unknown": True})
    objects = [bad, configmap(own, data={"a": "1"}), job(own, generate="db-migrate-")]
    created = namespace_to_create(objects, own, service="shop")
    assert created is not None
    report = applyer.prepare_bundle(hooks.plan_of(dump_yaml([created, *objects])).yaml)
    assert not report.ok
    assert f"ConfigMap {kube_namespace}/settings" in report.output
    assert ".spec: field not declared in schema" in report.output
    assert not exists(applyer, own) and not report.applied


def test_an_object_rejected_in_the_namespace_made_for_the_hooks_leaves_only_that_namespace(
    applyer: KubernetesApplyer, kube_namespace: str
) -> None:
    # What Argo CD does too: the namespace is created before the dry run and stays.
    own = f"{kube_namespace}-own"
    objects = [configmap(own, data={"a": 1}), job(own, generate="db-migrate-")]
    created = namespace_to_create(objects, own, service="shop")
    assert created is not None
    report = applyer.prepare_bundle(hooks.plan_of(dump_yaml([created, *objects])).yaml)
    assert not report.ok and f"ConfigMap {own}/settings" in report.output
    assert exists(applyer, own)
    assert names(applyer, f"/api/v1/namespaces/{own}/configmaps") in ([], ["kube-root-ca.crt"])
    assert not names(applyer, f"/apis/batch/v1/namespaces/{own}/jobs")
