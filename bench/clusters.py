"""10. Clusters in parallel: 10 clusters x 100 services (quick: 4 x 10), serial vs parallel.

Each service has 3 to 10 objects (the scale benchmark's mix: ConfigMaps, Deployments,
headless Services; service ``j`` has ``3 + j % 8``), ``wait`` off (the apply is what is
measured). The ten clusters are ten namespaces of one kube-apiserver, each reached through
a loopback TCP proxy of its own adding ``RTT_MS`` of round trip (half each way,
tests/support/delayproxy.py): real clusters are remote, and without it one local
apiserver on 2 cores makes every apply CPU-bound on the apiserver's side.

Two rounds, each from an empty database into fresh namespaces: one apply worker with
one process (serial), then one apply worker with one process per cluster (parallel).
In each round a fetch worker renders every service first, with the apply worker
started but consuming nothing; the clock starts when the apply worker is told to
consume ``apply`` (``add_consumer``) and stops when every deployment is final. Per
cluster, its time is from its first apply's start to its last apply's end.

Target: the parallel wall time <= 1.5 x the slowest cluster's time alone (its time in
the serial round, where nothing else applied meanwhile), and 0 order violations (within
a cluster, a deployment started before one with a lower id).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from bench.common import Context, mixed_objects, reset_state, say, start_kube, to_yaml
from bench.scale import tree_cpu_seconds
from tests.support.delayproxy import DelayProxy
from tests.support.gitserver import GitHttpServer, WorkingCopy
from tests.support.procs import wait_until
from tests.support.workers import PLAIN, start_worker

RTT_MS = 20.0
TARGET_RATIO = 1.5
FINAL = ("succeeded", "failed", "superseded")


def service_files(per_cluster: int) -> dict[str, str | bytes | None]:
    return {
        f"services/s{j:03d}/objects.yaml": to_yaml(mixed_objects(3 + j % 8, f"s{j:03d}"))
        for j in range(per_cluster)
    }


def run(ctx: Context) -> dict[str, Any]:
    clusters, per = ctx.count(10, 4), ctx.count(100, 10)
    rounds: dict[str, Any] = {}
    with ctx.stack() as outer:
        env, kube = start_kube(ctx, outer)
        git = outer.start(GitHttpServer())
        copy = WorkingCopy(git.create_repo("clusters"))
        outer.callback(copy.cleanup)
        copy.commit(service_files(per), message=f"{per} services")
        address = urlsplit(env.server)
        upstream = (address.hostname or "127.0.0.1", address.port or 443)
        proxies = [outer.start(DelayProxy(upstream, delay=RTT_MS / 2000)) for _ in range(clusters)]
        for mode, processes in (("serial", 1), ("parallel", clusters)):
            say(f"clusters: {mode} round, {clusters} x {per} services, {processes} process(es)")
            rounds[mode] = _round(ctx, outer, kube, env, copy, proxies, mode, per, processes)
    serial, parallel = rounds["serial"], rounds["parallel"]
    slowest_alone = max(serial["cluster_seconds"].values())
    return {
        "clusters": clusters,
        "services_per_cluster": per,
        "rtt_ms": RTT_MS,
        "serial": serial,
        "parallel": parallel,
        "slowest_cluster_alone_s": slowest_alone,
        "speedup": round(serial["wall_s"] / parallel["wall_s"], 2),
        "parallel_over_slowest": round(parallel["wall_s"] / slowest_alone, 2),
    }


def _round(
    ctx: Context,
    outer: Any,
    kube: Any,
    env: Any,
    copy: WorkingCopy,
    proxies: Sequence[DelayProxy],
    mode: str,
    per: int,
    processes: int,
) -> dict[str, Any]:
    from django.db import connections

    from gitops_site.celery import app
    from syncworker.models import Cluster, Repository, Service
    from syncworker.pipeline import handoff

    reset_state(ctx)
    rows = []
    for k, proxy in enumerate(proxies):
        namespace = f"{mode}-c{k}"
        kube.create_namespace(namespace)
        kubeconfig = proxy.kubeconfig(env.kubeconfig, ctx.workdir / f"c{k}.kubeconfig")
        rows.append(
            Cluster.objects.create(
                name=f"c{k}", applyer="kubernetes", settings={"kubeconfig": str(kubeconfig)}
            )
        )
    repo = Repository.objects.create(key=f"clusters-{mode}", provider="git", url=copy.url)
    # Interleaved: the apply queue holds the clusters' deployments mixed, as pushes would.
    Service.objects.bulk_create(
        Service(
            name=f"c{k}-s{j:03d}",
            repository=repo,
            k8s_yaml_dir=f"services/s{j:03d}",
            namespace=f"{mode}-c{k}",
            cluster=cluster,
            wait=False,
        )
        for j in range(per)
        for k, cluster in enumerate(rows)
    )
    total = per * len(rows)
    connections.close_all()
    with ctx.stack() as stack:
        stack.worker("fetch")
        apply = start_worker(queues="bench-idle", concurrency=processes, environ=stack.env,
                             name=f"apply-{mode}", launch=PLAIN, options=(),
                             log_dir=stack.logs, timeout=120)  # fmt: skip
        stack.callback(apply.stop)
        handoff.poll(repo.pk, trigger="manual")
        wait_until(lambda: _rendered() >= total, timeout=1800, what="every bundle", interval=0.5)
        say(f"clusters: {total} rendered; applying")
        started, busy_before = time.perf_counter(), machine_busy()
        app.control.add_consumer("apply", destination=[apply.name], reply=True)
        wait_until(lambda: final_count() >= total, timeout=3600, what="every apply", interval=0.2)
        wall = time.perf_counter() - started
        busy = (machine_busy() - busy_before) / wall
        apply_cpu = tree_cpu_seconds(apply.pid)
    say(f"clusters: {mode} round done in {wall:.1f}s")
    spans = cluster_spans()
    on_cluster = sum(
        kube.count(f"/api/v1/namespaces/{mode}-c{k}/configmaps") for k in range(len(rows))
    )
    return {
        "processes": processes,
        "wall_s": round(wall, 2),
        "statuses": statuses(),
        "cluster_seconds": {name: round(s, 2) for name, s in spans.items()},
        "order_violations": order_violations(),
        # CPU of the whole machine (all cores, everyone's), in cores busy on average, and
        # of the apply worker's processes, over the round.
        "machine_cores_busy": round(busy, 2),
        "apply_worker_cpu_s": round(apply_cpu, 1),
        "configmaps_on_cluster": on_cluster,
    }


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _rendered() -> int:
    from syncworker.models import Deployment

    return Deployment.objects.exclude(bundle_digest="").count()


def final_count() -> int:
    from syncworker.models import Deployment

    return Deployment.objects.filter(status__in=FINAL).count()


def statuses() -> dict[str, int]:
    from django.db.models import Count

    from syncworker.models import Deployment

    rows = Deployment.objects.order_by().values_list("status").annotate(n=Count("pk"))
    return {status: n for status, n in rows}


def cluster_spans() -> dict[str, float]:
    """Per cluster: from its first apply's start to its last apply's end."""
    from django.db.models import Max, Min

    from syncworker.models import Deployment

    rows = (
        Deployment.objects.exclude(started_at=None)
        .order_by()
        .values_list("cluster__name")
        .annotate(first=Min("started_at"), last=Max("finished_at"))
    )
    return {name: (last - first).total_seconds() for name, first, last in rows}


def order_violations() -> int:
    """Deployments that started before one of the same cluster with a lower id: the
    per-cluster order (every deployment here is ready when the applies begin)."""
    from syncworker.models import Deployment

    by_cluster: dict[int, list[Any]] = defaultdict(list)
    rows = Deployment.objects.exclude(started_at=None).order_by("pk")
    for cluster_id, started in rows.values_list("cluster_id", "started_at"):
        by_cluster[cluster_id].append(started)
    violations = 0
    for starts in by_cluster.values():
        latest = None
        for started in starts:
            if latest is not None and started < latest:
                violations += 1
            latest = started if latest is None else max(latest, started)
    return violations


def targets(result: dict[str, Any]) -> dict[str, Any]:
    parallel = result["parallel"]
    label = f"{result['clusters']} clusters x {result['services_per_cluster']} services"
    return {
        "clusters_parallel": {
            "target": f"parallel wall <= {TARGET_RATIO} x the slowest cluster alone",
            "value": f"{parallel['wall_s']:.1f} s = {result['parallel_over_slowest']} x "
            f"{result['slowest_cluster_alone_s']:.1f} s ({label}; serial "
            f"{result['serial']['wall_s']:.1f} s)",
            "met": result["parallel_over_slowest"] <= TARGET_RATIO
            and parallel["statuses"].get("succeeded") == parallel_total(result),
        },
        "clusters_order": {
            "target": "0 per-cluster order violations",
            "value": f"serial {result['serial']['order_violations']}, parallel "
            f"{parallel['order_violations']}",
            "met": result["serial"]["order_violations"] == 0 and parallel["order_violations"] == 0,
        },
    }


def parallel_total(result: dict[str, Any]) -> int:
    return int(result["clusters"] * result["services_per_cluster"])


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for mode in ("serial", "parallel"):
        r = result[mode]
        times = sorted(r["cluster_seconds"].values())
        rows.append(
            (
                f"{mode}: {r['processes']} apply process(es), RTT {result['rtt_ms']:g} ms",
                f"{r['wall_s']:.1f} s wall; per cluster {times[0]:.1f}-{times[-1]:.1f} s "
                f"(sum {sum(times):.1f} s); {r['statuses']}; order violations "
                f"{r['order_violations']}; machine {r['machine_cores_busy']} of "
                f"{os.cpu_count()} cores busy, apply worker CPU {r['apply_worker_cpu_s']} s",
            )
        )
    rows.append(
        (
            "  parallel vs serial",
            f"{result['speedup']}x faster; {result['parallel_over_slowest']} x the slowest "
            f"cluster alone ({result['slowest_cluster_alone_s']:.1f} s)",
        )
    )
    return rows
