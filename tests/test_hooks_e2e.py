"""Hooks end to end on the test cluster (controllers, scheduler, kwok nodes) with real
workers: a PreSync db-migration Job runs before any object is applied, a PostSync smoke
test after they are healthy, a Sync hook with the objects, each recorded on the deployment
and shown by the API; BeforeHookCreation replaces the earlier deployment's hook and
HookSucceeded deletes a finished one; a failing PreSync Job stops the sync with nothing
else applied, names the Job and why, and runs the SyncFail hook.

kwok runs no container: a Job's pods complete unless their template carries kwok's chaos
label (``FAILING_POD_LABEL``), and then they fail (tools/k8s-testenv/stages)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from syncworker.models import AppliedObject, Cluster, Deployment, Service
from syncworker.pipeline.diffing import diff_last_deployment
from tests.support.e2e import cm, finished, make_repo, sync
from tests.support.gitserver import WorkingCopy
from tests.support.kubecluster import FAILING_POD_LABEL, KubeClusterEnv
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True)]
Status = Deployment.Status
IMAGE = "registry.invalid/never-pulled:1"  # kwok runs no container: nothing is pulled
HOOK = "argocd.argoproj.io/hook"
POLICY = "argocd.argoproj.io/hook-delete-policy"


def hook_job(
    prefix: str, namespace: str, phase: str, *, fails: bool = False, policy: str = ""
) -> str:
    """A hook Job as Argo CD's examples write them: generateName, never restarted."""
    labels = {FAILING_POD_LABEL: "true"} if fails else {}
    return yaml.safe_dump(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "generateName": prefix,
                "namespace": namespace,
                "annotations": {HOOK: phase, **({POLICY: policy} if policy else {})},
            },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "run", "image": IMAGE, "command": ["/bin/sh", "-c", "true"]}
                        ],
                    },
                },
            },
        }
    )


def workload(name: str, namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 2,
                "progressDeadlineSeconds": 30,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": IMAGE}]},
                },
            },
        }
    )


@pytest.fixture
def on_cluster(kube_cluster: KubeClusterEnv) -> Cluster:
    return Cluster.objects.create(
        name="cluster",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_cluster.kubeconfig)},
        is_default=True,
    )


@pytest.fixture
def fresh_namespace(kube_cluster: KubeClusterEnv) -> Iterator[str]:
    """The name of a namespace that is not on the cluster (the sync creates it); deleted
    afterwards."""
    name = f"guestbook-{uuid.uuid4().hex[:8]}"
    yield name
    command = kube_cluster.kubectl_command(
        "delete", "namespace", name, "--ignore-not-found", "--wait=false"
    )
    subprocess.run(command, capture_output=True, check=True)


def kubectl_json(cluster: KubeClusterEnv, namespace: str, *args: str) -> Any:
    command = cluster.kubectl_command("-n", namespace, "get", *args, "-o", "json")
    return json.loads(subprocess.run(command, capture_output=True, check=True).stdout)


def exists(cluster: KubeClusterEnv, namespace: str, what: str) -> bool:
    command = cluster.kubectl_command(
        "-n", namespace, "get", what, "--ignore-not-found", "-o", "name"
    )
    return bool(subprocess.run(command, capture_output=True, check=True, text=True).stdout.strip())


def version(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def by_phase(deployment: Deployment) -> dict[str, dict[str, Any]]:
    return {record["phase"]: record for record in deployment.hooks}


def test_presync_runs_before_the_objects_and_postsync_after_they_are_healthy(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    cluster_namespace: str,
    git_repo: WorkingCopy,
    kube_cluster: KubeClusterEnv,
) -> None:
    ns = cluster_namespace
    git_repo.commit(
        {
            "deploy/shop/app.yaml": workload("api", ns),
            "deploy/shop/settings.yaml": cm("settings", ns, "1"),
            "deploy/shop/db-migrate.yaml": hook_job("db-migrate-", ns, "PreSync"),
            "deploy/shop/warm-cache.yaml": hook_job(
                "warm-cache-", ns, "Sync", policy="HookSucceeded"
            ),
            "deploy/shop/smoke-test.yaml": hook_job("smoke-test-", ns, "PostSync"),
        }
    )
    repo, (shop,) = make_repo(git_repo, "shop")
    Service.objects.filter(pk=shop.pk).update(health_timeout=90)
    sync(repo)
    (done,) = finished(shop, 1, timeout=150)
    assert done.status == Status.SUCCEEDED, done.error
    hooks = by_phase(done)
    assert {p: (r["result"], r["deleted"]) for p, r in hooks.items()} == {
        "PreSync": ("succeeded", False),
        "Sync": ("succeeded", True),  # HookSucceeded: deleted once it succeeded
        "PostSync": ("succeeded", False),
    }
    migrate, smoke = hooks["PreSync"]["name"], hooks["PostSync"]["name"]
    assert migrate.startswith("db-migrate-") and smoke.startswith("smoke-test-")
    assert f"PreSync hook Job {ns}/{migrate}: succeeded" in done.output

    # The migration Job's last write (its completion) came before the ConfigMap existed;
    # the Deployment's last write (available) before the smoke test was created.
    job = kubectl_json(kube_cluster, ns, f"job/{migrate}")
    assert any(c["type"] == "Complete" for c in job["status"]["conditions"])
    settings = kubectl_json(kube_cluster, ns, "configmap/settings")
    deployment = kubectl_json(kube_cluster, ns, "deployment/api")
    assert version(job) < version(settings)
    assert deployment["status"]["availableReplicas"] == 2
    test = kubectl_json(kube_cluster, ns, f"job/{smoke}")
    assert version(deployment) < version(test)
    (available,) = [c for c in deployment["status"]["conditions"] if c["type"] == "Available"]
    assert test["metadata"]["creationTimestamp"] >= available["lastTransitionTime"]
    assert not exists(kube_cluster, ns, f"job/{hooks['Sync']['name']}")

    # Hooks are never inventory: nothing to prune, nothing another service could own;
    # nor are they drift (a diff of the last deployment compares the objects only).
    owned = set(AppliedObject.objects.filter(service=shop).values_list("kind", "name"))
    assert owned == {("Deployment", "api"), ("ConfigMap", "settings")}
    drift = diff_last_deployment(shop)
    assert not drift.changed and len(drift.objects) == 2

    # The API shows each hook, what it was named and how it ended.
    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    answer = client.get(f"/api/deployments/{done.pk}/").json()
    shown = [(h["phase"], h["name"], h["result"]) for h in answer["hooks"]]
    assert shown[0] == ("PreSync", migrate, "succeeded") and len(shown) == 3

    # The next commit: BeforeHookCreation deletes the first migration Job before its
    # successor is created; the deployment succeeds again.
    git_repo.commit({"deploy/shop/settings.yaml": cm("settings", ns, "2")})
    sync(repo)
    _, again = finished(shop, 2, timeout=150)
    assert again.status == Status.SUCCEEDED, again.error
    second = by_phase(again)["PreSync"]["name"]
    assert second != migrate and exists(kube_cluster, ns, f"job/{second}")
    assert not exists(kube_cluster, ns, f"job/{migrate}")
    assert not exists(kube_cluster, ns, f"job/{smoke}")


def test_a_failing_presync_job_stops_the_sync_with_nothing_else_applied(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    cluster_namespace: str,
    git_repo: WorkingCopy,
    kube_cluster: KubeClusterEnv,
) -> None:
    ns = cluster_namespace
    git_repo.commit(
        {
            "deploy/shop/app.yaml": workload("api", ns),
            "deploy/shop/settings.yaml": cm("settings", ns, "1"),
            "deploy/shop/db-migrate.yaml": hook_job("db-migrate-", ns, "PreSync", fails=True),
            "deploy/shop/page-oncall.yaml": hook_job("page-oncall-", ns, "SyncFail"),
        }
    )
    repo, (shop,) = make_repo(git_repo, "shop")
    Service.objects.filter(pk=shop.pk).update(health_timeout=90)
    sync(repo)
    (done,) = finished(shop, 1, timeout=150)
    shop.refresh_from_db()
    assert (done.status, done.reason) == (Status.FAILED, Deployment.Reason.HOOK)
    hooks = by_phase(done)
    migrate = hooks["PreSync"]["name"]
    assert done.error.startswith("PreSync hook failed, nothing else applied:\n")
    assert f"PreSync hook Job {ns}/{migrate}: failed: BackoffLimitExceeded" in done.error
    assert shop.sync_status == "failed"

    # Nothing of the bundle reached the cluster, and nothing was recorded as owned.
    assert not exists(kube_cluster, ns, "configmap/settings")
    assert not exists(kube_cluster, ns, "deployment/api")
    assert not AppliedObject.objects.filter(service=shop).exists()
    # The SyncFail hook ran.
    page = hooks["SyncFail"]["name"]
    assert page.startswith("page-oncall-") and exists(kube_cluster, ns, f"job/{page}")


# Argo CD's argocd-example-apps, as its `pre-post-sync` and `sync-waves` apps lay them
# out: the guestbook Deployment and Service, hook Jobs without a namespace, waves.
GUESTBOOK_UI = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: guestbook-ui
spec:
  replicas: 1
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      app: guestbook-ui
  template:
    metadata:
      labels:
        app: guestbook-ui
    spec:
      containers:
      - image: gcr.io/heptio-images/ks-guestbook-demo:0.2
        name: guestbook-ui
        ports:
        - containerPort: 80
"""
GUESTBOOK_UI_SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: guestbook-ui
spec:
  ports:
  - port: 80
    targetPort: 80
  selector:
    app: guestbook-ui
"""
PRE_POST_SYNC: dict[str, str | bytes | None] = {
    "deploy/kustomize-guestbook/guestbook-ui-deployment.yaml": GUESTBOOK_UI,
    "deploy/kustomize-guestbook/guestbook-ui-svc.yaml": GUESTBOOK_UI_SVC,
    "deploy/kustomize-guestbook/kustomization.yaml": """\
resources:
- guestbook-ui-deployment.yaml
- guestbook-ui-svc.yaml
""",
    "deploy/pre-post-sync/kustomization.yaml": """\
namePrefix: pre-post-sync-

bases:
- ../kustomize-guestbook

resources:
- pre-sync-job.yaml
- post-sync-job.yaml
""",
    "deploy/pre-post-sync/pre-sync-job.yaml": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: before
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/hook-delete-policy: HookSucceeded
spec:
  template:
    spec:
      containers:
      - name: endpoint-consumer
        image: curlimages/curl
        command: ["curl", "https://example.invalid/"]
      restartPolicy: Never
  backoffLimit: 2
""",
    "deploy/pre-post-sync/post-sync-job.yaml": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: after
  annotations:
    argocd.argoproj.io/hook: PostSync
    argocd.argoproj.io/hook-delete-policy: HookSucceeded
spec:
  template:
    spec:
      containers:
      - name: sleep
        image: alpine:latest
        command: ["sleep", "10"]
      restartPolicy: Never
  backoffLimit: 0
""",
}


def sync_waves(namespace: str) -> str:
    """Argo CD's sync-waves app with a PreSync schema Job, and the Namespace it runs in as
    a document of the bundle."""
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: batch/v1
kind: Job
metadata:
  generateName: upgrade-sql-schema-
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  template:
    spec:
      containers:
        - name: upgrade-sql-schema
          image: alpine:latest
          command: ["sleep", "10"]
      restartPolicy: Never
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  replicas: 2
  selector:
    matchLabels:
      tier: backend
  template:
    metadata:
      labels:
        tier: backend
    spec:
      containers:
        - name: main
          image: nginx:latest
---
apiVersion: v1
kind: Service
metadata:
  name: backend-svc
spec:
  selector:
    tier: backend
  ports:
    - protocol: TCP
      port: 8080
      targetPort: 8080
---
apiVersion: batch/v1
kind: Job
metadata:
  generateName: maintenance-page-up-
  annotations:
    argocd.argoproj.io/hook: Sync
    argocd.argoproj.io/sync-wave: "1"
spec:
  template:
    spec:
      containers:
        - name: page-up
          image: alpine:latest
          command: ["sleep", "10"]
      restartPolicy: Never
  backoffLimit: 0
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  annotations:
    argocd.argoproj.io/sync-wave: "1"
spec:
  replicas: 2
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
    spec:
      containers:
        - name: main
          image: node:latest
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
  annotations:
    argocd.argoproj.io/sync-wave: "1"
spec:
  selector:
    tier: frontend
  ports:
    - protocol: TCP
      port: 80
      targetPort: 80
"""


def test_argo_cds_pre_post_sync_app_deploys_into_a_namespace_created_before_its_hook(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    fresh_namespace: str,
    git_repo: WorkingCopy,
    kube_cluster: KubeClusterEnv,
) -> None:
    ns = fresh_namespace
    git_repo.commit(PRE_POST_SYNC)
    repo, (app,) = make_repo(git_repo, "pre-post-sync")
    Service.objects.filter(pk=app.pk).update(namespace=ns, health_timeout=90)
    sync(repo)
    (done,) = finished(app, 1, timeout=150)
    assert done.status == Status.SUCCEEDED, done.error
    hooks = by_phase(done)
    shown = {p: (r["namespace"], r["name"], r["result"], r["deleted"]) for p, r in hooks.items()}
    assert shown == {
        "PreSync": (ns, "pre-post-sync-before", "succeeded", True),
        "PostSync": (ns, "pre-post-sync-after", "succeeded", True),
    }
    assert exists(kube_cluster, ns, "deployment/pre-post-sync-guestbook-ui")
    assert exists(kube_cluster, ns, "service/pre-post-sync-guestbook-ui")
    # The namespace was created for the service, not taken into its inventory.
    owned = set(AppliedObject.objects.filter(service=app).values_list("kind", "name"))
    assert owned == {
        ("Deployment", "pre-post-sync-guestbook-ui"),
        ("Service", "pre-post-sync-guestbook-ui"),
    }


def test_a_presync_hook_runs_in_the_namespace_its_own_bundle_brings_before_the_waves(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    fresh_namespace: str,
    git_repo: WorkingCopy,
    kube_cluster: KubeClusterEnv,
) -> None:
    ns = fresh_namespace
    git_repo.commit({"deploy/sync-waves/manifests.yaml": sync_waves(ns)})
    repo, (app,) = make_repo(git_repo, "sync-waves")
    Service.objects.filter(pk=app.pk).update(namespace=ns, health_timeout=90)
    sync(repo)
    (done,) = finished(app, 1, timeout=150)
    assert done.status == Status.SUCCEEDED, done.error
    hooks = by_phase(done)
    assert {p: (r["namespace"], r["result"]) for p, r in hooks.items()} == {
        "PreSync": (ns, "succeeded"),
        "Sync": (ns, "succeeded"),
    }
    # The schema Job completed before the first wave's Service was written.
    job = kubectl_json(kube_cluster, ns, f"job/{hooks['PreSync']['name']}")
    assert any(c["type"] == "Complete" for c in job["status"]["conditions"])
    backend = kubectl_json(kube_cluster, ns, "service/backend-svc")
    assert version(job) < version(backend)
    assert exists(kube_cluster, ns, "deployment/frontend")
    # The bundle's own Namespace is the service's, like any of its objects.
    owned = set(AppliedObject.objects.filter(service=app).values_list("kind", "name"))
    assert ("Namespace", ns) in owned and ("Service", "frontend") in owned


def test_a_bundle_its_dry_run_rejects_runs_no_presync_hook(
    celery_worker_process: WorkerProcess,
    on_cluster: Cluster,
    fresh_namespace: str,
    git_repo: WorkingCopy,
    kube_cluster: KubeClusterEnv,
) -> None:
    ns = fresh_namespace
    files = dict(PRE_POST_SYNC)
    # A typo Argo CD's dry run refuses too: nothing may run or be applied.
    files["deploy/kustomize-guestbook/guestbook-ui-deployment.yaml"] = GUESTBOOK_UI.replace(
        "  replicas: 1", "  replica: 1"
    )
    git_repo.commit(files)
    repo, (app,) = make_repo(git_repo, "pre-post-sync")
    Service.objects.filter(pk=app.pk).update(namespace=ns, health_timeout=90)
    sync(repo)
    (done,) = finished(app, 1, timeout=150)
    assert (done.status, done.reason) == (Status.FAILED, Deployment.Reason.APPLY), done.error
    assert f"Deployment {ns}/pre-post-sync-guestbook-ui" in done.error
    assert "replica" in done.error and done.hooks == []
    assert not exists(kube_cluster, ns, "jobs")
    assert not exists(kube_cluster, ns, "deployments,services")
    assert not AppliedObject.objects.filter(service=app).exists()
    # The namespace made for the service stays, as Argo CD leaves the one it created.
    namespaces = kube_cluster.kubectl_command("get", "namespace", ns, "-o", "name")
    assert subprocess.run(namespaces, capture_output=True, text=True).returncode == 0
