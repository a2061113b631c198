"""4. Scale: a cold sync of 1,000 services of 10 objects each from one Git repository
(``--services 10000`` for the large run).

One repository on a real Git smart-HTTP server holds 1,000 service directories (quick:
100), each with four ConfigMaps, three Deployments and three headless Services in two
files. The cluster is a fresh kube-apiserver holding only the namespace. The processes
are the ones scripts/run starts, with its settings: gunicorn (2 workers), the fetch/poll
worker (``-Q default,poll,fetch -c 2``), the apply worker (``-Q apply -c 2``) and beat
(Flower, a monitoring UI, is left out). One signed push webhook starts the sync; the
clock stops when every deployment row is final.

Measured: wall time; peak RSS of each process kind (VmRSS of every process of its tree,
sampled every 0.5 s); Redis commands (INFO commandstats delta, INFO itself left out);
PostgreSQL statements (pg_stat_statements, the benchmark's own role left out) and
transactions and tuples (pg_stat_database delta). Afterwards, with the workers stopped,
the fetch and the apply of 20 services are profiled in this process with cProfile.

The services do not wait for health: no controller-manager runs here, so a Deployment
would never become available.

Targets: <= 4 minutes (10,000 services: <= 10 minutes); every worker process <= 200 MiB
RSS; per service <= 10 SQL statements, <= 20 Redis commands, no new connection.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import requests

from bench.common import (
    MONITOR_ROLE,
    BenchPostgres,
    Context,
    InThread,
    config_map,
    cprofile,
    deployment,
    reset_state,
    say,
    send_push_webhook,
    service,
    start_gitops_on_kube,
    summarize,
    to_yaml,
)
from tests.support.procs import wait_until

NAMESPACE = "bench-scale"
KEY = "scale"
SECRET = "scale-webhook-secret"
WALL_TARGETS = {1000: 240.0, 10_000: 600.0}  # seconds, by number of services
RSS_TARGET_MIB = 200.0
PROFILED = 20


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pids(root: int, parents: dict[int, int] | None = None) -> list[int]:
    parents = _parents() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        if pid in parents:
            found.append(pid)
        pending.extend(children.get(pid, []))
    return found


class RssSampler(InThread):
    """Samples VmRSS of every process of each tree (a worker and its pool children, and
    the git processes they run) every ``interval`` seconds, in a thread."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self.samples = 0
        self.peak_tree = dict.fromkeys(roots, 0)
        self.peak_process = dict.fromkeys(roots, 0)
        self.max_processes = dict.fromkeys(roots, 0)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        parents = _parents()
        for kind, root in self.roots.items():
            sizes = [_rss_kib(pid) for pid in tree_pids(root, parents)]
            self.peak_tree[kind] = max(self.peak_tree[kind], sum(sizes))
            self.peak_process[kind] = max(self.peak_process[kind], max(sizes, default=0))
            self.max_processes[kind] = max(self.max_processes[kind], len(sizes))
        self.samples += 1

    def result(self) -> dict[str, dict[str, float]]:
        return {
            kind: {
                "peak_process_mib": round(self.peak_process[kind] / 1024, 1),
                "peak_tree_mib": round(self.peak_tree[kind] / 1024, 1),
                "max_processes": self.max_processes[kind],
            }
            for kind in self.roots
        }


def tree_cpu_seconds(root: int) -> float:
    """CPU used so far by a process tree: each live process's own user and system time
    plus what the children it reaped used (the git processes of a fetch worker)."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14 to 17 of proc(5), after comm and state.
        ticks += sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_process(roots: dict[str, int]) -> dict[str, float]:
    return {kind: tree_cpu_seconds(pid) for kind, pid in roots.items()}


def redis_commands(url: str) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats)."""
    import redis

    with contextlib.closing(redis.Redis.from_url(url)) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def redis_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta.pop("info", None)  # the benchmark's own reads
    delta = {k: v for k, v in delta.items() if v > 0}
    top = sorted(delta.items(), key=lambda item: -item[1])[:16]
    return {"commands": sum(delta.values()), "top": dict(top)}


_UTILITY = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|SHOW|START)\b", re.I)
_FK_CHECK = re.compile(r"FROM ONLY .* FOR KEY SHARE OF", re.S)
_COLUMNS = re.compile(r"^(SELECT (?:DISTINCT )?).+? (FROM) ", re.S)


def _brief(query: str) -> str:
    """A statement on one line, its column list elided."""
    text = " ".join(query.split()).replace('"', "")
    return _COLUMNS.sub(r"\1... \2 ", text, count=1)[:160]


class PgMonitor:
    """Reads PostgreSQL's own counters through a role of its own (``benchmon``), so its
    reads can be left out of what the system is charged with."""

    def __init__(self, pg: BenchPostgres) -> None:
        import psycopg

        self.pg = pg
        self.conn = psycopg.connect(pg.monitor_url, autocommit=True)
        self.transactions = 0

    def close(self) -> None:
        self.conn.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.transactions += 1
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def reset_statements(self) -> None:
        if self.pg.statements:
            self.rows("SELECT pg_stat_statements_reset()")

    def statements(self) -> dict[str, Any] | None:
        """Statements run since the reset by every role but ours."""
        if not self.pg.statements:
            return None
        rows = self.rows(
            "SELECT s.query, s.calls, s.total_exec_time, s.rows FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = %s AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (self.pg.database, MONITOR_ROLE),
        )
        utility = sum(calls for query, calls, _, _ in rows if _UTILITY.match(query))
        # Foreign-key checks that PostgreSQL's own triggers run: no round trip of a client.
        checks = sum(calls for query, calls, _, _ in rows if _FK_CHECK.search(query))
        total = sum(calls for _, calls, _, _ in rows)
        top = sorted(((calls, _brief(query)) for query, calls, _, _ in rows), reverse=True)
        slowest = sorted(rows, key=lambda row: -row[2])[:5]
        return {
            "client_statements": total - checks,
            "queries": total - checks - utility,
            "utility": utility,
            "foreign_key_checks": checks,
            "top": [
                {"calls": calls, "query": query}
                for calls, query in top
                if not _FK_CHECK.search(query)
            ][:20],
            "execution_ms": round(sum(ms for _, _, ms, _ in rows), 1),
            "top_by_time": [
                {"ms": round(ms, 1), "calls": calls, "rows": n, "query": _brief(q)}
                for q, calls, ms, n in slowest
            ],
        }

    def database(self) -> dict[str, int]:
        self.rows("SELECT pg_stat_clear_snapshot()")
        row = self.rows(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, "
            "tup_updated, tup_deleted, sessions FROM pg_stat_database WHERE datname = %s",
            (self.pg.database,),
        )[0]
        names = (
            "xact_commit",
            "xact_rollback",
            "tup_returned",
            "tup_fetched",
            "tup_inserted",
            "tup_updated",
            "tup_deleted",
            "sessions",
        )
        return dict(zip(names, (int(v) for v in row), strict=True))


def _service_files(index: int) -> dict[str, str | bytes | None]:
    name = f"svc-{index:04d}"
    configs = [config_map(f"{name}-config-{k}") for k in range(4)]
    app = [deployment(f"{name}-{k}") for k in range(3)] + [service(f"{name}-{k}") for k in range(3)]
    return {
        f"services/{name}/config.yaml": to_yaml(configs),
        f"services/{name}/app.yaml": to_yaml(app),
    }


def run(ctx: Context) -> dict[str, Any]:
    from django.db import connections

    from syncworker.models import Repository, Service

    reset_state(ctx)
    count = ctx.services or ctx.count(1000, 100)
    # Generous: a missed target is reported, a sync that never ends is not.
    timeout = max(ctx.count(900, 240), count * 0.25)
    with ctx.stack() as outer:
        kube, copy, cluster = start_gitops_on_kube(ctx, outer, namespace=NAMESPACE, repo="scale")
        files: dict[str, str | bytes | None] = {}
        for i in range(count):
            files.update(_service_files(i))
        commit = copy.commit(files, message=f"{count} services")

        repo = Repository.objects.create(
            key=KEY, provider="git", url=copy.url, webhook_secret=SECRET
        )
        Service.objects.bulk_create(
            Service(
                name=f"svc-{i:04d}",
                repository=repo,
                k8s_yaml_dir=f"services/svc-{i:04d}",
                namespace=NAMESPACE,
                cluster=cluster,
                # No controller-manager runs here, so a Deployment never becomes
                # available: the sync is measured, not the health wait.
                wait=False,
            )
            for i in range(count)
        )
        connections.close_all()
        monitor = PgMonitor(ctx.postgres)
        outer.callback(monitor.close)

        with ctx.stack() as processes:
            web_proc, web = processes.web()
            fetch = processes.worker("fetch")
            apply = processes.worker("apply")
            beat = processes.beat(ctx.workdir / "celerybeat-schedule")
            time.sleep(2)  # let start-up work settle before counting
            roots = {
                "web": web_proc.pid,
                "fetch worker": fetch.pid,
                "apply worker": apply.pid,
                "beat": beat.pid,
            }
            cpu_roots = {
                **roots,
                "kube-apiserver and etcd": kube.env.pid,
                "postgresql": ctx.postgres.proc.pid if ctx.postgres.proc else 0,
                "redis": ctx.redis.proc.pid if ctx.redis.proc else 0,
            }
            cpu_before = cpu_by_process(cpu_roots)
            redis_before = redis_commands(ctx.redis.url)
            db_before = monitor.database()
            monitor.reset_statements()
            tx_before = monitor.transactions
            with RssSampler(roots) as rss, requests.Session() as session:
                progress = _sync(session, web, monitor, commit, count, timeout)
            redis_after = redis_commands(ctx.redis.url)
            cpu_after = cpu_by_process(cpu_roots)
            statements = monitor.statements()
        time.sleep(1.5)  # closed connections report their last counts on exit
        db_after = monitor.database()
        monitor_transactions = monitor.transactions - tx_before

        on_cluster = {
            "configmaps": kube.count(f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
            "deployments": kube.count(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
            "services": kube.count(f"/api/v1/namespaces/{NAMESPACE}/services"),
        }
        timings = _timings(monitor, progress["t0_epoch"])
        profiles = _profile(repo.pk)

    database = {k: db_after[k] - db_before[k] for k in db_after}
    database["xact_commit"] -= monitor_transactions  # the benchmark's own reads
    return {
        "services": count,
        "objects_per_service": 10,
        "objects_expected": count * 10,
        "objects_on_cluster": on_cluster,
        **{k: v for k, v in progress.items() if k != "t0_epoch"},
        "rss": rss.result(),
        "rss_samples": rss.samples,
        "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_roots},
        "redis": redis_delta(redis_before, redis_after),
        "postgres_statements": statements,
        "postgres_database": database,
        "per_deployment": timings,
        "profiles": profiles,
    }


FINAL = ("succeeded", "failed", "superseded")


def _sync(
    session: requests.Session,
    web: str,
    monitor: PgMonitor,
    commit: str,
    count: int,
    timeout: float,
) -> dict[str, Any]:
    t0_epoch = time.time()
    t0 = time.perf_counter()
    response = send_push_webhook(session, web, KEY, SECRET, commit)
    if response.status_code != 202:
        raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:300]}")
    marks: dict[str, float] = {}
    last_report = t0
    counts: dict[str, int] = {}

    def all_final() -> bool:
        nonlocal last_report
        rows = monitor.rows(
            "SELECT status, count(*), count(*) FILTER (WHERE bundle_digest <> '') "
            "FROM syncworker_deployment GROUP BY status"
        )
        now = time.perf_counter() - t0
        counts.clear()
        counts.update({status: int(n) for status, n, _ in rows})
        rendered = sum(int(r) for _, _, r in rows)
        if sum(counts.values()) >= count:
            marks.setdefault("all_queued_s", now)
        if rendered >= count:
            marks.setdefault("all_rendered_s", now)
        if counts.get("succeeded"):
            marks.setdefault("first_succeeded_s", now)
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            say(f"scale: {now:.0f}s, {counts}, rendered {rendered}")
        final = sum(counts.get(s, 0) for s in FINAL)
        # Every deployment final, not merely ``count`` of them: a service deployed twice
        # must not end the wait early (and shows in the statuses as a miss).
        return final >= count and final == sum(counts.values())

    with contextlib.suppress(TimeoutError):  # reported as not completed
        wait_until(all_final, timeout=timeout, what="every deployment", interval=0.5)
    wall = time.perf_counter() - t0
    say(f"scale: done in {wall:.1f}s: {counts}")
    return {
        "t0_epoch": t0_epoch,
        "completed": counts.get("succeeded", 0) == count,
        "wall_s": round(wall, 2),
        "statuses": counts,
        "marks": {k: round(v, 2) for k, v in marks.items()},
    }


def _timings(monitor: PgMonitor, t0_epoch: float) -> dict[str, Any]:
    rows = monitor.rows(
        "SELECT extract(epoch FROM queued_at), extract(epoch FROM started_at), "
        "extract(epoch FROM finished_at) FROM syncworker_deployment "
        "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY started_at"
    )
    applying = [float(f) - float(s) for _, s, f in rows]
    finished = [float(f) - t0_epoch for _, _, f in rows]
    first_start = min((float(s) for _, s, _ in rows), default=t0_epoch) - t0_epoch
    return {
        "apply_seconds": summarize(applying),
        "apply_seconds_sum": round(sum(applying), 2),
        "first_apply_started_s": round(first_start, 2),
        "last_finished_s": round(max(finished, default=0.0), 2),
    }


def _profile(repository_pk: int) -> dict[str, Any]:
    """The fetch and the apply of a few services, in this process (workers stopped)."""
    from syncworker.models import Service
    from syncworker.pipeline.deploying import apply_deployment
    from syncworker.pipeline.fetching import fetch_and_render
    from syncworker.pipeline.polling import poll_repository

    ids = list(
        Service.objects.filter(repository_id=repository_pk)
        .order_by("pk")[:PROFILED]
        .values_list("pk", flat=True)
    )
    polled = poll_repository(repository_pk, trigger="manual", force=True, service_ids=ids)
    if polled.error or len(polled.deployments) != len(ids):
        raise RuntimeError(f"profiling poll: {polled}")
    _, fetch = cprofile(lambda: [fetch_and_render(pk) for pk in polled.deployments])
    results, apply = cprofile(lambda: [apply_deployment(pk) for pk in polled.deployments])
    failed = [r for r in results if r.status != "succeeded"]
    if failed:
        raise RuntimeError(f"profiled applies failed: {failed[:3]}")
    return {"deployments": len(ids), "fetch": fetch, "apply": apply}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    workers = {k: v for k, v in result["rss"].items() if "worker" in k}
    peak = max(v["peak_process_mib"] for v in workers.values())
    wall = result["wall_s"]
    n = result["services"]
    label = f"{n} services x 10 objects"
    # The quick run's 100 services are held to the 1,000-service target.
    limit = WALL_TARGETS.get(n, WALL_TARGETS[1000] if n < 10_000 else WALL_TARGETS[10_000])
    per_service = _per_service(result)
    return {
        "scale_wall_time": {
            "target": f"cold sync of {max(n, 1000):,} services x 10 objects"
            f" <= {limit / 60:.0f} min",
            "value": f"{wall:.1f} s ({label}"
            + ("" if result["completed"] else f", NOT completed: {result['statuses']}")
            + ")",
            "met": result["completed"] and wall <= limit,
        },
        "scale_cost_per_service": {
            "target": "per service <= 10 SQL statements, <= 20 Redis commands, 0 new connections",
            "value": ", ".join(f"{v:g} {k}" for k, v in per_service.items()),
            "met": per_service["sql_statements"] <= 10
            and per_service["redis_commands"] <= 20
            and per_service["connections_opened"] < 0.01,
        },
        "scale_worker_rss": {
            "target": "each worker process <= 200 MiB RSS",
            "value": f"peak {peak:.0f} MiB ("
            + ", ".join(f"{k} {v['peak_process_mib']:.0f}" for k, v in workers.items())
            + ")",
            "met": peak <= RSS_TARGET_MIB,
        },
    }


def _per_service(result: dict[str, Any]) -> dict[str, float]:
    n = result["services"]
    statements = result["postgres_statements"] or {"client_statements": float("nan")}
    return {
        "sql_statements": round(statements["client_statements"] / n, 2),
        "redis_commands": round(result["redis"]["commands"] / n, 2),
        "connections_opened": round(result["postgres_database"]["sessions"] / n, 3),
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    marks = result["marks"]
    timings = result["per_deployment"]
    statements = result["postgres_statements"]
    db = result["postgres_database"]
    rows = [
        (
            f"cold sync, {result['services']} services x 10 objects",
            f"{result['wall_s']:.1f} s wall, statuses {result['statuses']}",
        ),
        (
            "  milestones since the webhook",
            f"all queued {marks.get('all_queued_s', 'n/a')} s, first applied "
            f"{marks.get('first_succeeded_s', 'n/a')} s, all rendered "
            f"{marks.get('all_rendered_s', 'n/a')} s",
        ),
        (
            "  apply per deployment (10 objects)",
            f"p50 {timings['apply_seconds'].get('p50', 0):.3f} s, p99 "
            f"{timings['apply_seconds'].get('p99', 0):.3f} s, sum {timings['apply_seconds_sum']} s",
        ),
        (
            "  objects on the cluster",
            ", ".join(f"{k} {v}" for k, v in result["objects_on_cluster"].items()),
        ),
    ]
    for kind, rss in result["rss"].items():
        rows.append(
            (
                f"  peak RSS, {kind}",
                f"largest process {rss['peak_process_mib']:.0f} MiB, whole tree "
                f"{rss['peak_tree_mib']:.0f} MiB ({rss['max_processes']} processes at most)",
            )
        )
    if cpu := result.get("cpu_seconds"):
        total = sum(cpu.values()) or 1.0
        rows.append(
            (
                "  CPU seconds during the sync",
                f"{total:.0f} in all: "
                + ", ".join(f"{k} {v:.0f} ({v / total:.0%})" for k, v in cpu.items()),
            )
        )
    rows.append(("  Redis commands", f"{result['redis']['commands']:,}"))
    if statements:
        rows.append(
            (
                "  PostgreSQL statements (pg_stat_statements)",
                f"{statements['client_statements']:,} from clients ({statements['queries']:,} "
                f"queries + {statements['utility']:,} BEGIN/COMMIT/...), plus "
                f"{statements['foreign_key_checks']:,} foreign-key checks by triggers",
            )
        )
    rows.append(
        (
            "  PostgreSQL transactions, tuples (pg_stat_database)",
            f"{db['xact_commit'] + db['xact_rollback']:,} transactions, {db['sessions']:,} "
            f"connections opened; tuples returned "
            f"{db['tup_returned']:,}, fetched {db['tup_fetched']:,}, inserted "
            f"{db['tup_inserted']:,}, updated {db['tup_updated']:,}, deleted {db['tup_deleted']:,}",
        )
    )
    n = result["services"]
    rows.append(
        (
            "  per service",
            f"{result['redis']['commands'] / n:.1f} Redis commands, "
            + (f"{statements['client_statements'] / n:.1f} SQL statements, " if statements else "")
            + f"{db['sessions'] / n:.2f} PostgreSQL connections opened",
        )
    )
    return rows


def details(result: dict[str, Any]) -> list[str]:
    timings = result["per_deployment"]
    wall = result["wall_s"]
    n = result["services"]
    share = timings["apply_seconds_sum"] / wall if wall else 0
    lines = [
        f"**Scale** ({n} services): the apply worker spent {timings['apply_seconds_sum']} s of "
        f"the {wall} s inside applies ({share:.0%}; the rest of its time per deployment is task "
        f"hand-over, a new database connection, the lock and the bookkeeping queries); the "
        f"first apply started {timings['first_apply_started_s']} s after the webhook, all "
        f"bundles were rendered at {result['marks'].get('all_rendered_s', 'n/a')} s. Top Redis "
        "commands: " + ", ".join(f"{k} {v:,}" for k, v in result["redis"]["top"].items()) + ".",
        "",
    ]
    statements = result["postgres_statements"]
    if statements:
        lines += [
            f"SQL: {statements['execution_ms'] / 1000:.1f} s of execution in PostgreSQL in all. "
            "Most frequent: "
            + "; ".join(f"{s['calls']:,} x `{s['query'][:120]}`" for s in statements["top"][:5])
            + ". Most time: "
            + "; ".join(
                f"{s['ms']:.0f} ms in {s['calls']:,} x `{s['query'][:120]}`"
                for s in statements["top_by_time"][:3]
            )
            + ".",
            "",
        ]
    for phase in ("fetch", "apply"):
        profile = result["profiles"][phase]
        cumulative = ", ".join(
            f"`{e['function']}` {e['cum_s']:.2f} s" for e in profile["by_cumulative"][:7]
        )
        own = ", ".join(f"`{e['function']}` {e['own_s']:.2f} s" for e in profile["by_own_time"][:4])
        lines += [
            f"The {phase} of {result['profiles']['deployments']} services in this process "
            f"(cProfile, {profile['total_s']:.2f} s): cumulative {cumulative}; own time {own}.",
            "",
        ]
    return lines
