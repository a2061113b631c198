"""What the apply reads does not grow with the tables: on PostgreSQL, with a background of
thousands of rows (other services' history and inventory on the same cluster, a backlog
of deployments), each statement reads rows of the deployment at hand, not the tables.

Read from PostgreSQL's own plans (``tests.support.plans``: EXPLAIN ANALYZE of every
statement, in a rolled-back savepoint, before it runs), after ANALYZE: a count of rows,
never a time. A sequential scan or an index walked in order through the history reads
the background (thousands of rows) and fails here; ``bench/sql_plans.py`` shows the same
at 10,000 services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.pipeline import deploying
from syncworker.pipeline.deploying import apply_deployment
from tests.support.plans import deployment_rows_read, explained

pytestmark = pytest.mark.django_db(transaction=True)

BACKGROUND_SERVICES = 400  # 1,200 finished deployments, 4,000 inventory rows
BACKLOG = 1000
# What one statement of an apply may read: the deployment's own rows (its ten inventory
# rows, looked up twice over, its service's few deployments), small tables, some slack.
MAX_ROWS_READ = 60


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("reads plans with PostgreSQL's EXPLAIN (ANALYZE); the SQLite pass has none")


def refs(service: str, namespace: str) -> list[dict[str, str]]:
    kinds = [("v1", "ConfigMap")] * 4 + [("apps/v1", "Deployment")] * 3 + [("v1", "Service")] * 3
    return [
        {"api_version": v, "kind": k, "namespace": namespace, "name": f"{service}-{i}"}
        for i, (v, k) in enumerate(kinds)
    ]


def bundle(items: list[dict[str, str]]) -> str:
    return "".join(
        f"---\napiVersion: {r['api_version']}\nkind: {r['kind']}\n"
        f"metadata:\n  name: {r['name']}\n  namespace: {r['namespace']}\n"
        for r in items
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster.objects.create(
        name="plans", applyer=Cluster.Applyer.FILE, settings={"directory": str(tmp_path)}
    )


@pytest.fixture
def background(cluster: Cluster) -> list[Service]:
    """Services on the cluster with three finished deployments and ten inventory rows
    each; the deployments of the test come after them, as a new commit's would."""
    repo = Repository.objects.create(key="plans", provider="git", url="https://git.invalid/p")
    services = Service.objects.bulk_create(
        Service(
            name=f"bg-{i:03d}",
            repository=repo,
            k8s_yaml_dir=f"s/{i}",
            namespace=f"ns-{i % 20}",
            cluster=cluster,
            wait=False,
        )
        for i in range(BACKGROUND_SERVICES + 1)
    )
    finished = Deployment.objects.bulk_create(
        Deployment(
            service=s,
            cluster=cluster,
            commit_sha=f"{n:040x}",
            status=status,
            bundle_digest="d" * 64,
            applied_objects=refs(s.name, s.namespace),
        )
        for s in services
        for n, status in enumerate(["succeeded", "failed", "succeeded"])
    )
    last = {d.service_id: d for d in finished}
    AppliedObject.objects.bulk_create(
        AppliedObject(service=s, cluster=cluster, deployment=last[s.pk], **ref)
        for s in services
        for ref in refs(s.name, s.namespace)
    )
    return services


def analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def ready(service: Service, cluster: Cluster, **fields: Any) -> Deployment:
    items = refs(service.name, service.namespace)
    return Deployment.objects.create(
        service=service,
        cluster=cluster,
        commit_sha="f" * 40,
        bundle=bundle(items),
        bundle_digest="e" * 64,
        object_count=len(items),
        applied_objects=items,
        **fields,
    )


def test_one_apply_reads_its_own_rows_not_the_history_or_the_inventory(
    cluster: Cluster, background: list[Service]
) -> None:
    *others, mine = background
    # A backlog waiting for its fetch: in flight on the cluster, not ready to apply.
    Deployment.objects.bulk_create(
        Deployment(service=others[n % len(others)], cluster=cluster, commit_sha=f"{n:040x}")
        for n in range(BACKLOG)
    )
    deployment = ready(mine, cluster)
    analyze()

    with explained() as plans:
        result = apply_deployment(deployment.pk)

    assert result.status == "succeeded", result
    assert AppliedObject.objects.filter(deployment=deployment).count() == 10
    assert len(plans.records) >= 8, "every statement of the apply was explained"
    heavy = [r for r in plans.records if r["rows_read"] > MAX_ROWS_READ]
    assert not heavy, "\n".join(
        f"{r['caller']}: read {r['rows_read']} rows for {r['rows']} ({r['scans']}): "
        f"{r['shape'][:300]}"
        for r in heavy
    )


def test_the_ownership_check_reads_the_bundles_objects_not_the_clusters_inventory(
    cluster: Cluster, background: list[Service]
) -> None:
    *others, mine = background
    # Its bundle names an object another service holds: found, and nothing else read.
    items = [*refs(mine.name, mine.namespace), refs(others[7].name, others[7].namespace)[4]]
    deployment = ready(mine, cluster)
    Deployment.objects.filter(pk=deployment.pk).update(applied_objects=items)
    analyze()

    with explained() as plans:
        result = apply_deployment(deployment.pk)

    assert result.status == "failed" and "bg-007-4" in result.error, result
    (check,) = [r for r in plans.records if r["caller"].startswith("inventory.held")]
    assert check["rows"] == 11
    assert check["rows_read"] <= 3 * 11, check


def ready_backlog(cluster: Cluster, background: list[Service]) -> list[Deployment]:
    """Older ready deployments on another cluster, then a backlog of ``BACKLOG`` ready
    ones on ``cluster``; analyzed."""
    other = Cluster.objects.create(name="other", applyer=Cluster.Applyer.FILE)
    Deployment.objects.bulk_create(
        Deployment(
            service=background[n % 100],
            cluster=other,
            commit_sha=f"{n:040x}",
            bundle_digest="e" * 64,
        )
        for n in range(BACKLOG)
    )
    backlog = Deployment.objects.bulk_create(
        Deployment(
            service=background[n % len(background)],
            cluster=cluster,
            commit_sha=f"{n:040x}",
            bundle_digest="e" * 64,
        )
        for n in range(BACKLOG)
    )
    analyze()
    return backlog


def test_the_next_of_a_long_backlog_is_found_without_reading_the_backlog(
    cluster: Cluster, background: list[Service]
) -> None:
    """A cold sync queues thousands on one cluster; each pick of the drain must not read
    them all (that was quadratic in the backlog)."""
    backlog = ready_backlog(cluster, background)
    with explained() as plans:
        upcoming = deploying._upcoming(cluster, {backlog[0].pk})
        more = deploying._any_ready(cluster, {backlog[0].pk})
    # The drain's last look, once it applied them all.
    Deployment.objects.filter(pk__in=[d.pk for d in backlog]).update(status="succeeded")
    with explained() as last:
        none = deploying._any_ready(cluster, {backlog[-1].pk})

    assert [d.pk for d in upcoming] == [d.pk for d in backlog[1 : 1 + deploying.READ_AHEAD]]
    assert more and not none
    plans.records += last.records
    assert len(plans.records) == 5  # the read ahead: two id lookups and the rows
    # The backlog is deployment rows; the few joined rows of a read-ahead (services,
    # clusters) may come by a sequential scan of those small tables here.
    heavy = [(r["caller"], deployment_rows_read(r["plan"])) for r in plans.records]
    heavy = [h for h in heavy if h[1] > 2 * deploying.READ_AHEAD]
    assert heavy == [], heavy


def test_a_drain_out_of_time_hands_the_cluster_on_without_reading_the_backlog(
    cluster: Cluster, background: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain that runs out of time queues an apply for the cluster's oldest ready
    deployment; finding it must not walk the history either."""
    backlog = ready_backlog(cluster, background)
    sent: list[int] = []
    monkeypatch.setattr(deploying.handoff, "apply", sent.append)

    with explained() as plans:
        first = deploying.hand_on(cluster)

    assert first == backlog[0].pk and sent == [first]
    (pick,) = plans.records
    assert deployment_rows_read(pick["plan"]) <= 4, pick
