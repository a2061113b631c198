"""Clusters in parallel, each in order, through real processes: two apply worker
processes on the Redis broker, the real kube-apiserver, and a cluster reached through a
loopback proxy (tests/support/delayproxy.py) that the test stalls at will, so that an
apply really holds its cluster's lease while other work arrives."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s

from gitops_site.celery import app
from syncworker.models import Cluster, Deployment, Repository, Service
from tests.support.delayproxy import DelayProxy
from tests.support.e2e import cm, finished, many_cms, sync
from tests.support.gitserver import WorkingCopy
from tests.support.workers import WorkerProcess, start_worker

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
Status = Deployment.Status


@pytest.fixture
def apply_workers(
    celery_worker_process: WorkerProcess, worker_database_url: str
) -> Iterator[list[WorkerProcess]]:
    """Two apply workers with one process each, as on two machines; the shared worker
    stops consuming ``apply``."""
    app.control.cancel_consumer("apply", destination=[celery_worker_process.name], reply=True)
    workers = [
        start_worker(worker_database_url, queues="apply", concurrency=1, name=f"apply{n}")
        for n in (1, 2)
    ]
    yield workers
    for worker in workers:
        worker.stop()
    app.control.add_consumer("apply", destination=[celery_worker_process.name], reply=True)


@pytest.fixture
def far(kube_env: Any, tmp_path: Path) -> Iterator[tuple[Cluster, DelayProxy]]:
    """A cluster behind a proxy the test can stall."""
    address = urlsplit(kube_env.server)
    proxy = DelayProxy((address.hostname or "127.0.0.1", address.port or 443)).start()
    kubeconfig = proxy.kubeconfig(kube_env.kubeconfig, tmp_path / "far.kubeconfig")
    cluster = Cluster.objects.create(
        name="far", applyer=Cluster.Applyer.KUBERNETES, settings={"kubeconfig": str(kubeconfig)}
    )
    yield cluster, proxy
    proxy.stop()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def resource_version(core: k8s.CoreV1Api, namespace: str, name: str) -> int:
    meta = core.read_namespaced_config_map(name, namespace).metadata
    assert meta is not None and meta.resource_version
    return int(meta.resource_version)


def applying(service: Service) -> bool:
    return service.deployments.filter(status=Status.APPLYING).exists()


def test_a_stalled_cluster_does_not_hold_up_another(
    apply_workers: list[WorkerProcess],
    far: tuple[Cluster, DelayProxy],
    kube_env: Any,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    far_cluster, link = far
    near = Cluster.objects.create(
        name="near",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_env.kubeconfig)},
    )
    ns = kube_namespace
    git_repo.commit({"deploy/slow/all.yaml": many_cms(20, ns, "1")})
    repo = Repository.objects.create(key="e2e", provider="git", url=git_repo.url)
    slow = Service.objects.create(
        name="slow", repository=repo, k8s_yaml_dir="deploy/slow", cluster=far_cluster
    )
    with link.paused():
        sync(repo)
        wait_for(lambda: applying(slow), "the slow apply to start")
        git_repo.commit({"deploy/fast/cm.yaml": cm("fast", ns, "1")})
        fast = Service.objects.create(
            name="fast", repository=repo, k8s_yaml_dir="deploy/fast", cluster=near
        )
        sync(repo)
        (done,) = finished(fast, 1, timeout=25)
        assert done.status == Status.SUCCEEDED, done.error
        assert applying(slow), "the far cluster's apply is still stalled"
    (slow_done,) = finished(slow, 1, timeout=90)
    assert slow_done.status == Status.SUCCEEDED, slow_done.error


def test_deployments_of_many_services_queued_behind_a_held_cluster_apply_in_id_order(
    apply_workers: list[WorkerProcess],
    far: tuple[Cluster, DelayProxy],
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    cluster, link = far
    ns = kube_namespace
    git_repo.commit({"deploy/big/all.yaml": many_cms(10, ns, "1")})
    repo = Repository.objects.create(key="e2e", provider="git", url=git_repo.url)

    def service(name: str) -> Service:
        return Service.objects.create(
            name=name, repository=repo, k8s_yaml_dir=f"deploy/{name}", cluster=cluster
        )

    big = service("big")
    names = [f"svc{i}" for i in range(6)]
    with link.paused():
        sync(repo)
        wait_for(lambda: applying(big), "the first apply to hold the cluster")
        git_repo.commit({f"deploy/{name}/cm.yaml": cm(name, ns, "1") for name in names})
        queued = [service(name) for name in names]
        sync(repo)

        def turned_away() -> bool:
            logs = "".join(worker.tail(200_000) for worker in apply_workers)
            rendered = all(one.deployments.exclude(bundle_digest="").exists() for one in queued)
            return rendered and "cluster far is busy" in logs

        # The six were fetched as one batch, whose one apply task met the held lease and
        # returned at once: nothing waits, nothing is retried, the holder drains them.
        wait_for(turned_away, "the other worker to turn the batch's task away", timeout=25)
    for one in queued:
        finished(one, 1, timeout=90)

    rows = sorted((one.deployments.get() for one in queued), key=lambda d: d.pk)
    assert {d.status for d in rows} == {Status.SUCCEEDED}
    versions = [resource_version(core, ns, d.service.name) for d in rows]
    assert versions == sorted(versions), "written to the apiserver in deployment id order"
    started = [d.started_at for d in rows]
    assert started == sorted(started)  # type: ignore[type-var]
    assert big.deployments.get().status == Status.SUCCEEDED
