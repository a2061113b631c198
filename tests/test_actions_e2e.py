"""Deliberate actions and contention, end to end through worker processes and the real
kube-apiserver: rollback and redeploy really reach the cluster, two apply workers never
apply to one cluster at once, and no worker log ever holds a credential."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from gitops_site.celery import app
from syncworker.models import Cluster, Deployment, Service
from syncworker.pipeline import actions
from tests.support.e2e import cm, finished, make_repo, many_cms, sync
from tests.support.gitserver import WorkingCopy
from tests.support.workers import WorkerProcess, start_worker

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
Status = Deployment.Status
TOKEN = "ghp_e2e_token_never_logged_0123456789"
WEBHOOK_SECRET = "e2e-webhook-secret-never-logged"


def test_a_rollback_and_a_redeploy_reach_the_cluster(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "good")})
    repo, (service,) = make_repo(git_repo, "app")
    sync(repo)
    (good,) = finished(service, 1)
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "bad")})
    sync(repo)
    finished(service, 2)
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "bad"}

    rollback = actions.rollback(good)
    (*_, restored) = finished(service, 3)
    assert (restored.pk, restored.status, restored.trigger) == (
        rollback.pk,
        "succeeded",
        "rollback",
    )
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "good"}

    core.patch_namespaced_config_map("alpha", ns, {"data": {"value": "by-hand"}})
    actions.redeploy(service)
    (*_, redeployed) = finished(service, 4)
    assert (redeployed.status, redeployed.trigger) == ("succeeded", "manual")
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "bad"}, "Git's head"


def test_two_apply_workers_never_apply_to_one_cluster_at_once(
    celery_worker_process: WorkerProcess,
    worker_database_url: str,
    cluster: Cluster,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    names = [f"svc{i}" for i in range(4)]
    git_repo.commit(
        {
            f"deploy/{name}/all.yaml": many_cms(60, ns, name).replace("bulk-", f"{name}-")
            for name in names
        }
    )
    repo, services = make_repo(git_repo, *names)
    # finished_at must mark the end of the apply: the health wait runs outside the lease.
    Service.objects.filter(repository=repo).update(wait=False)
    app.control.cancel_consumer("apply", destination=[celery_worker_process.name], reply=True)
    workers = [start_worker(worker_database_url, queues="apply", concurrency=1) for _ in range(2)]
    try:
        sync(repo)
        done = [finished(service, 1, timeout=120)[0] for service in services]
    finally:
        for worker in workers:
            worker.stop()
        app.control.add_consumer("apply", destination=[celery_worker_process.name], reply=True)

    assert {d.status for d in done} == {Status.SUCCEEDED}, [d.error for d in done]
    spans = sorted((d.started_at, d.finished_at) for d in done)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"two applies to one cluster overlapped: {spans}"  # type: ignore[operator]
    # Both workers took applies: the second one waited for the cluster's lease.
    assert all("apply_deployment" in w.log.read_text() for w in workers)


def test_worker_logs_never_hold_a_token_or_a_webhook_secret(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", kube_namespace, "1")})
    repo, (service,) = make_repo(git_repo, "app")
    repo.token, repo.webhook_secret = TOKEN, WEBHOOK_SECRET
    repo.save()
    sync(repo)
    finished(service, 1)
    # A failing fetch logs its error too: the URL it names must not carry the token.
    git_repo.commit({"deploy/app/a.yaml": "kind: [broken\n"})
    sync(repo)
    finished(service, 2)
    time.sleep(0.5)  # the worker flushes its log lines

    logs: dict[Path, str] = {
        path: path.read_text(errors="replace")
        for path in sorted((Path(__file__).parent.parent / "var").glob("test-*.log"))
    }
    assert logs, "the workers' log files are where this test looks"
    leaked = [str(path) for path, text in logs.items() if TOKEN in text or WEBHOOK_SECRET in text]
    assert leaked == []
