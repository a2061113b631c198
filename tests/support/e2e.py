"""What the end-to-end tests share: objects to commit, waiting for deployments, syncing
through the broker, and the cluster, client and apply-worker fixtures (registered as a
pytest plugin in tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from gitops_site.celery import app
from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.tasks import poll_repository
from tests.support.gitserver import WorkingCopy
from tests.support.workers import WorkerProcess, start_worker

# A short cluster lease, so a dead apply worker frees its cluster in seconds; Redis'
# visibility timeout stays at its default (far longer than the test): recovery must come
# from the lease and the sweep, not from redelivery.
CRASH_RECOVERY_ENV = {"GITOPS_APPLY_LOCK_TTL": "6"}


def cm(name: str, namespace: str, value: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"value": value},
        }
    )


def many_cms(count: int, namespace: str, value: str) -> str:
    return "---\n".join(cm(f"bulk-{i:04d}", namespace, value) for i in range(count))


def finished(service: Service, count: int, timeout: float = 90) -> list[Deployment]:
    """Wait until the service has ``count`` deployments in a final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = list(service.deployments.filter(status__in=Deployment.FINAL_STATES).order_by("pk"))
        if len(done) >= count:
            return done
        time.sleep(0.2)
    states = list(service.deployments.values_list("pk", "status", "error"))
    raise AssertionError(f"deployments of {service.name} did not finish: {states}")


def sync(repo: Repository) -> None:
    """What a push webhook does: poll at once, through the broker and a worker."""
    poll_repository.apply_async((repo.pk,), {"trigger": "webhook"}, ignore_result=False).get(
        timeout=60
    )


@pytest.fixture
def cluster(kube_env: Any) -> Cluster:
    return Cluster.objects.create(
        name="test",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_env.kubeconfig)},
        is_default=True,
    )


@pytest.fixture
def core(kube_api_client: Any) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube_api_client)


def make_repo(git_repo: WorkingCopy, *services: str) -> tuple[Repository, list[Service]]:
    repo = Repository.objects.create(key="e2e", provider="git", url=git_repo.url)
    rows = [
        Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"deploy/{name}")
        for name in services
    ]
    return repo, rows


@pytest.fixture
def apply_worker(
    celery_worker_process: WorkerProcess, worker_database_url: str
) -> Iterator[dict[str, WorkerProcess]]:
    """A production-like split: the shared worker stops consuming ``apply``, and one
    dedicated worker with a single process consumes it (and nothing else)."""
    app.control.cancel_consumer("apply", destination=[celery_worker_process.name], reply=True)
    env = CRASH_RECOVERY_ENV
    workers = {"apply": start_worker(worker_database_url, queues="apply", concurrency=1, env=env)}
    yield workers
    workers["apply"].stop()
    app.control.add_consumer("apply", destination=[celery_worker_process.name], reply=True)
