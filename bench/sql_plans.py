"""13. SQL plans on a large state: what each statement of the pipeline reads.

The database holds what 10,000 services leave behind (``--services`` changes it): 100
repositories of 100 services, 10 clusters, three finished deployments per service
(succeeded, failed, superseded, in a mix), 1,000 queued (half of them rendered and ready,
half waiting for their fetch, many long past the sweep's grace), 25 waiting for health,
and 10 objects of inventory per service (100,000 rows). One repository of 100 services is
real, on a Git smart-HTTP server; the clusters use the file applyer. After ``ANALYZE``,
in this process: one poll that finds one changed service, that deployment's fetch, its
apply (which drains its cluster: five more ready deployments), and one recovery sweep.

Every statement they send is run first under ``EXPLAIN (ANALYZE, BUFFERS)`` inside a
savepoint that is rolled back (so the plan is that of the real state at that moment),
then for real (``tests.support.plans``). Per statement: rows returned, rows read (every
scan node's rows out plus rows it removed by filter or recheck, times its loops) and
execution time. ``python -m bench.sql_plans BEFORE.json AFTER.json`` prints two runs
side by side as a markdown table.

Target: no statement reads more rows than there are deployments in flight (queued or
applying: the backlog, 1,025 here), whatever the length of the history (31,000
deployments) and the size of the inventory (100,000 rows). At ``--quick`` (1,000 services)
the backlog is a quarter of the table, and PostgreSQL rightly scans the table for the
sweep's read of it: that target is for the full size.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bench.common import Context, config_map, deployment, reset_state, say, service, to_yaml
from tests.support.gitserver import GitHttpServer, WorkingCopy
from tests.support.plans import explained

REPOSITORIES = 100
CLUSTERS = 10
QUEUED = 1000
READY_ON_DRAINED = 5
WAITING_FOR_HEALTH = 25


def _objects(name: str, namespace: str, rev: int = 0) -> list[dict[str, Any]]:
    configs = [config_map(f"{name}-config-{k}", namespace, rev) for k in range(4)]
    apps = [deployment(f"{name}-{k}", namespace) for k in range(3)]
    return configs + apps + [service(f"{name}-{k}", namespace) for k in range(3)]


def _refs(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "api_version": o["apiVersion"],
            "kind": o["kind"],
            "namespace": o["metadata"].get("namespace", ""),
            "name": o["metadata"]["name"],
        }
        for o in objects
    ]


def populate(copy: WorkingCopy, url: str, services: int) -> list[int]:
    """The large state; returns the ids of the real repository's services."""
    from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service

    Status, Reason = Deployment.Status, Deployment.Reason
    per_repo = services // REPOSITORIES
    clusters = Cluster.objects.bulk_create(
        Cluster(name=f"c{i}", applyer=Cluster.Applyer.FILE, is_default=i == 0)
        for i in range(CLUSTERS)
    )
    repos = Repository.objects.bulk_create(
        Repository(
            key=f"repo-{r:03d}",
            provider="git",
            url=url if r == 0 else f"{url}-{r}",
            poll_interval=3600,
        )
        for r in range(REPOSITORIES)
    )
    rows = Service.objects.bulk_create(
        (
            Service(
                name=f"r{r:03d}-s{s:03d}",
                repository=repos[r],
                k8s_yaml_dir=f"services/s{s:03d}",
                namespace=f"ns-{r:03d}",
                cluster=clusters[(r * per_repo + s) % CLUSTERS],
                wait=False,
            )
            for r in range(REPOSITORIES)
            for s in range(per_repo)
        ),
        batch_size=2000,
    )
    copy.commit(
        {
            f"services/s{s:03d}/all.yaml": to_yaml(_objects(f"r000-s{s:03d}", "ns-000"))
            for s in range(per_repo)
        },
        message="the real repository",
    )
    bundles = {}
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    history = (
        (Status.SUCCEEDED, Status.SUCCEEDED, Status.SUCCEEDED),
        (Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED),
        (Status.SUCCEEDED, Status.SUPERSEDED, Status.SUCCEEDED),
        (Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED),
    )
    finished = []
    for n, row in enumerate(rows):
        objects = _objects(row.name, row.namespace)
        bundles[row.pk] = (to_yaml(objects), _refs(objects))
        for d, status in enumerate(history[n % len(history)]):
            at = start + dt.timedelta(minutes=n % 1000 + d * 1000)
            finished.append(
                Deployment(
                    service=row,
                    cluster_id=row.cluster_id,
                    commit_sha=f"{d:08x}{n:032x}",
                    tree_sha=f"{n:040x}",
                    status=status,
                    reason=Reason.APPLY if status == Status.FAILED else "",
                    bundle=bundles[row.pk][0],
                    bundle_digest=f"{n:064x}",
                    object_count=10,
                    applied_objects=bundles[row.pk][1],
                    queued_at=at,
                    started_at=at,
                    finished_at=at + dt.timedelta(seconds=2),
                )
            )
    say(f"sql plans: {len(finished)} finished deployments")
    finished = Deployment.objects.bulk_create(finished, batch_size=1000)
    last_ok = {d.service_id: d.pk for d in finished if d.status == Status.SUCCEEDED}
    inventory = (
        AppliedObject(
            service_id=row.pk,
            cluster_id=row.cluster_id or 0,
            deployment_id=last_ok[row.pk],
            **ref,
        )
        for row in rows
        for ref in bundles[row.pk][1]
    )
    AppliedObject.objects.bulk_create(inventory, batch_size=5000)

    # The backlog, outside the real repository: ready ones on every cluster but five on
    # the drained one (c0, that of the real repository's first service), the rest waiting
    # for their fetch, most of them past the sweep's grace.
    now = dt.datetime.now(dt.timezone.utc)
    backlog, on_c0 = [], 0
    for n, row in enumerate(rows[per_repo : per_repo + QUEUED]):
        ready = (n // 10) % 2 == 0 and (
            row.cluster_id != clusters[0].pk or on_c0 < READY_ON_DRAINED
        )
        on_c0 += ready and row.cluster_id == clusters[0].pk
        bundle, refs = bundles[row.pk] if ready else ("", [])
        backlog.append(
            Deployment(
                service=row,
                cluster_id=row.cluster_id,
                commit_sha=f"{9:08x}{n:032x}",
                tree_sha=f"{n + 1:040x}",
                bundle=bundle,
                bundle_digest=f"{n:064x}" if ready else "",
                object_count=len(refs),
                applied_objects=refs,
                queued_at=now - dt.timedelta(seconds=30 if n < 100 else 3600),
            )
        )
    waiting = rows[per_repo + QUEUED : per_repo + QUEUED + WAITING_FOR_HEALTH]
    backlog += [
        Deployment(
            service=row,
            cluster_id=row.cluster_id,
            commit_sha=f"{8:08x}{n:032x}",
            status=Status.APPLYING,
            bundle=bundles[row.pk][0],
            bundle_digest="f" * 64,
            object_count=10,
            applied_objects=bundles[row.pk][1],
            queued_at=now,
            started_at=now,
            health_deadline=now + dt.timedelta(minutes=5 if n % 5 else -5),
        )
        for n, row in enumerate(waiting)
    ]
    Deployment.objects.bulk_create(backlog, batch_size=1000)
    return [row.pk for row in rows[:per_repo]]


def run(ctx: Context) -> dict[str, Any]:
    from django.db import connection

    from syncworker.models import AppliedObject, Deployment
    from syncworker.pipeline import lifecycle, recovery
    from syncworker.pipeline.deploying import apply_deployment
    from syncworker.pipeline.fetching import fetch_and_render
    from syncworker.pipeline.polling import poll_repository

    reset_state(ctx)
    count = ctx.services or ctx.count(10_000, 1_000)
    with ctx.stack() as stack:
        git = stack.start(GitHttpServer())
        url = git.create_repo("plans")
        copy = WorkingCopy(url)
        stack.callback(copy.cleanup)
        say(f"sql plans: populating {count} services")
        real = populate(copy, url, count)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        repo_id = _repo_of(real[0])
        # Warm-up, not measured: the first poll queues the real repository's services
        # (their history names trees Git never had) and the first sweep sets its marker.
        first = poll_repository(repo_id)
        if first.error or len(first.deployments) != len(real):
            raise RuntimeError(f"first poll: {first}")
        recovery.requeue_stuck()
        copy.commit(
            {"services/s000/all.yaml": to_yaml(_objects("r000-s000", "ns-000", rev=1))},
            message="one service changes",
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        with explained() as capture:
            capture.stage = "poll"
            polled = poll_repository(repo_id)
            if polled.error or len(polled.deployments) != 1:
                raise RuntimeError(f"poll: {polled}")
            (new,) = polled.deployments
            capture.stage = "fetch"
            fetched = fetch_and_render(new)
            if not fetched.rendered:
                raise RuntimeError(f"fetch: {fetched}")
            capture.stage = "apply"
            applied = apply_deployment(new)
            if applied.status != Deployment.Status.SUCCEEDED:
                raise RuntimeError(f"apply: {applied}")
            capture.stage = "sweep"
            recovery.requeue_stuck()
    return {
        "services": count,
        "deployments": Deployment.objects.count(),
        "inventory_rows": AppliedObject.objects.count(),
        "in_flight": Deployment.objects.filter(status__in=lifecycle.ACTIVE).count(),
        "statements": _grouped(capture.records),
    }


def _repo_of(service_id: int) -> int:
    from syncworker.models import Service

    return Service.objects.values_list("repository_id", flat=True).get(pk=service_id)


def _grouped(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per stage and statement (its place in the code): calls, and the worst
    call's figures."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["stage"], record["caller"])
        first = {k: v for k, v in record.items() if k != "plan"}
        row = rows.setdefault(key, {**first, "calls": 0, "ms_total": 0.0, "rows_read_total": 0})
        row["calls"] += record.get("calls", 1)
        row["rows_read_total"] += record.get("rows_read_total", record["rows_read"])
        row["ms_total"] = round(row["ms_total"] + record.get("ms_total", record["ms"]), 3)
        if record["rows_read"] > row["rows_read"]:
            row.update({k: record[k] for k in ("rows", "rows_read", "ms", "buffers", "scans")})
    return list(rows.values())


def targets(result: dict[str, Any]) -> dict[str, Any]:
    worst = max(result["statements"], key=lambda row: row["rows_read"])
    return {
        "sql_plans_rows_read": {
            "target": f"every statement reads <= the {result['in_flight']} deployments in "
            f"flight ({result['deployments']} deployments, {result['inventory_rows']} "
            "inventory rows)",
            "value": f"{worst['rows_read']} ({worst['stage']}: {worst['caller']})",
            "met": worst["rows_read"] <= result["in_flight"],
        }
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = sorted(result["statements"], key=lambda row: -row["rows_read"])
    out = [
        (
            "state",
            f"{result['deployments']} deployments, {result['inventory_rows']} inventory rows",
        ),
        ("statements", str(sum(row["calls"] for row in rows))),
        ("rows read, all statements", str(sum(row["rows_read_total"] for row in rows))),
    ]
    for row in rows[:8]:
        out.append(
            (
                f"{row['stage']}: {row['caller']}",
                f"{row['rows_read']} read, {row['rows']} returned, {row['ms']:.2f} ms",
            )
        )
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """A markdown table of two runs' statements, matched by stage, function and order."""

    def keyed(result: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
        seen: dict[tuple[str, str], int] = {}
        rows = {}
        for row in _grouped(result["statements"]):
            where = (row["stage"], row["caller"].rpartition(":")[0])
            seen[where] = seen.get(where, 0) + 1
            rows[(*where, seen[where])] = row
        return rows

    old, new = keyed(before), keyed(after)
    lines = [
        "| stage | statement (function) | calls | rows returned | rows read before → after "
        "| ms before → after |",
        "|---|---|---|---|---|---|",
    ]
    for key in [*new, *(k for k in old if k not in new)]:
        a, b = old.get(key), new.get(key)
        row = b or a
        assert row is not None
        read = f"{a['rows_read'] if a else '-'} → {b['rows_read'] if b else '-'}"
        ms = f"{a['ms']:.2f} → {b['ms']:.2f}" if a and b else "-"
        lines.append(f"| {key[0]} | {key[1]} | {row['calls']} | {row['rows']} | {read} | {ms} |")
    return lines


if __name__ == "__main__":
    import sys

    def _load(path: str) -> dict[str, Any]:
        with open(path) as f:
            report = json.load(f)
        return report["results"]["sql_plans"] if "results" in report else report

    print("\n".join(compare(_load(sys.argv[1]), _load(sys.argv[2]))))
