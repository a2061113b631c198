"""Statement budgets of the pipeline's stages: each stage call, on realistic data (a
repository of 20 services of 10 objects, other services' inventory on the same cluster,
a history of earlier deployments), runs at most its number of SQL statements. A count,
not a time: a stage that starts re-reading rows, or writing one row per object, fails
here rather than in the scale benchmark.

The counts are every statement Django sends, BEGIN and COMMIT included, as the scale
benchmark counts them. Real transactions (``transaction=True``), so that the
after-commit work a stage triggers runs, and is counted, inside the stage call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from tests.support.gitserver import WorkingCopy

pytestmark = pytest.mark.django_db(transaction=True)

SERVICES = 20
# Statements per stage call. The poll's is for the whole repository, whatever the number
# of services it queues.
POLL = 10  # two reads of the services (each: ids, then rows), the repository lock and
# update, one INSERT
FETCH = 2  # read the deployment with its service, store the bundle
# Read the deployment (with service, repository, cluster and whether anyone is notified),
# start, read the inventory, then in one transaction: the inventory's difference, the
# service's record, the final state. (A service naming no cluster reads the default.)
# The cluster's drain adds four per drain, not per deployment: the read ahead of the
# oldest ready deployments (two id lookups, one read of their rows; eight at a time in a
# backlog) and the look after letting go of the lease (a deployment that became ready
# meanwhile).
APPLY_FIRST = 12
APPLY_AGAIN = 12


def objects(service: str, namespace: str, rev: int) -> str:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{service}-cm-{i}", "namespace": namespace},
            "data": {"rev": str(rev if i == 0 else 0)},
        }
        for i in range(10)
    ]
    return yaml.safe_dump_all(docs)


def counted(stage: Callable[[], Any]) -> tuple[int, Any, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        answer = stage()
    return len(queries), answer, [q["sql"][:120] for q in queries.captured_queries]


@pytest.fixture
def repo(
    git_repo: WorkingCopy, kube_env: Any, kube_namespace: str
) -> tuple[Repository, WorkingCopy, str]:
    cluster = Cluster.objects.create(
        name="budget",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(kube_env.kubeconfig)},
        is_default=True,
    )
    git_repo.commit(
        {
            f"apps/s{i:02d}/all.yaml": objects(f"s{i:02d}", kube_namespace, 0)
            for i in range(SERVICES)
        }
    )
    repo = Repository.objects.create(key="budget", provider="git", url=git_repo.url)
    Service.objects.bulk_create(
        Service(
            name=f"s{i:02d}",
            repository=repo,
            k8s_yaml_dir=f"apps/s{i:02d}",
            cluster=cluster,
            wait=False,
        )
        for i in range(SERVICES)
    )
    return repo, git_repo, kube_namespace


def test_each_stage_stays_within_its_statement_budget(
    repo: tuple[Repository, WorkingCopy, str],
) -> None:
    repository, git_repo, namespace = repo

    n, polled, sql = counted(lambda: poll_repository(repository.pk))
    assert len(polled.deployments) == SERVICES
    assert n <= POLL, f"poll of {SERVICES} new services: {n} statements\n" + "\n".join(sql)
    first, *rest = polled.deployments

    n, fetched, sql = counted(lambda: fetch_and_render(first))
    assert fetched.rendered
    assert n <= FETCH, f"fetch: {n} statements\n" + "\n".join(sql)
    for pk in rest:
        fetch_and_render(pk)
    for pk in rest:  # the other services' inventory is on the cluster before ours
        assert apply_deployment(pk).status == "succeeded"

    n, applied, sql = counted(lambda: apply_deployment(first))
    assert applied.status == "succeeded", applied
    assert n <= APPLY_FIRST, f"first apply: {n} statements\n" + "\n".join(sql)
    assert AppliedObject.objects.filter(deployment_id=first).count() == 10

    # One file of one service changes: its next deployment, from poll to applied.
    git_repo.commit({"apps/s00/all.yaml": objects("s00", namespace, 1)})
    n, polled, sql = counted(lambda: poll_repository(repository.pk))
    assert len(polled.deployments) == 1
    assert n <= POLL, f"poll of one change: {n} statements\n" + "\n".join(sql)
    (again,) = polled.deployments
    n, _, sql = counted(lambda: fetch_and_render(again))
    assert n <= FETCH, f"fetch again: {n} statements\n" + "\n".join(sql)
    n, applied, sql = counted(lambda: apply_deployment(again))
    assert applied.status == "succeeded", applied
    assert n <= APPLY_AGAIN, f"second apply: {n} statements\n" + "\n".join(sql)
    assert AppliedObject.objects.filter(deployment_id=again).count() == 10
    assert Deployment.objects.get(pk=first).status == "succeeded"


def test_a_poll_reads_the_retry_backoff_of_all_waiting_services_in_one_query(
    repo: tuple[Repository, WorkingCopy, str],
) -> None:
    repository, _, _ = repo
    polled = poll_repository(repository.pk)
    # Five services' deployments gave up after retries: each waits for its backoff.
    waiting = polled.deployments[:5]
    Deployment.objects.filter(pk__in=waiting).update(
        status=Deployment.Status.FAILED, reason=Deployment.Reason.RETRIES
    )
    Deployment.objects.exclude(pk__in=waiting).update(status=Deployment.Status.SUCCEEDED)

    n, again, sql = counted(lambda: poll_repository(repository.pk))
    assert again.deployments == [], "each waits for its backoff (the poll interval)"
    # Nothing inserted; the backoff query once with each of the poll's two reads.
    assert n <= POLL + 1, f"poll with 5 services waiting: {n} statements\n" + "\n".join(sql)
