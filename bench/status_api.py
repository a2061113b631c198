"""5. Status API: ``GET /v1/gitops/repos`` with 1,000 repositories under gunicorn.

The database holds 1,000 repositories, each with two services, each service with two
succeeded deployments and its last applied commit and time as the apply worker records
them. gunicorn serves ``gitops_site.wsgi`` with two sync workers, as scripts/run starts
it. ``ANALYZE`` runs first, as autovacuum would a minute after such inserts. Then 100
requests one after the other (quick: 30): the time one request takes on an idle server;
and the answer rendered anew in this process, five times. Then ``wrk -t2 -c16
-d15s --latency`` (quick: ``-d5s``) on loopback, with ``--timeout 10s`` so that slow
answers are measured rather than dropped as timeouts. Rendering the answer anew (no
cached answer at hand) is profiled in this process with cProfile.

Target: p99 <= 50 ms under wrk.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from typing import Any

import requests

from bench.common import Context, cprofile, reset_state, say, summarize

REPOSITORIES = 1000
SERVICES_PER_REPOSITORY = 2
DEPLOYMENTS_PER_SERVICE = 2
P99_TARGET_MS = 50.0
PATH = "/v1/gitops/repos"


def _populate() -> None:
    from syncworker.models import Cluster, Deployment, Repository, Service

    cluster = Cluster.objects.create(name="bench", applyer=Cluster.Applyer.FILE, is_default=True)
    repos = Repository.objects.bulk_create(
        Repository(
            key=f"repo-{i:04d}",
            provider="github",
            owner="acme",
            name=f"repo-{i:04d}",
            url=f"https://github.com/acme/repo-{i:04d}",
            last_seen_commit=f"{i:040x}",
        )
        for i in range(REPOSITORIES)
    )
    services = Service.objects.bulk_create(
        Service(
            name=f"{repo.key}-svc-{k}",
            repository=repo,
            k8s_yaml_dir=f"deploy/svc-{k}",
            cluster=cluster,
        )
        for repo in repos
        for k in range(SERVICES_PER_REPOSITORY)
    )
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    deployments = []
    for n, svc in enumerate(services):
        for d in range(DEPLOYMENTS_PER_SERVICE):
            moment = start + dt.timedelta(minutes=n * DEPLOYMENTS_PER_SERVICE + d)
            finished = moment + dt.timedelta(seconds=2)
            commit = f"{n:032x}{d:08x}"
            deployments.append(
                Deployment(
                    service=svc,
                    cluster=cluster,
                    commit_sha=commit,
                    tree_sha=f"{n:040x}",
                    status=Deployment.Status.SUCCEEDED,
                    queued_at=moment,
                    started_at=moment,
                    finished_at=finished,
                    object_count=3,
                )
            )
        # What a successful apply records on the service, as the apply worker does.
        svc.last_applied_commit, svc.last_applied_tree = commit, f"{n:040x}"
        svc.last_applied_at = finished
    Deployment.objects.bulk_create(deployments, batch_size=1000)
    Service.objects.bulk_update(
        services, ["last_applied_commit", "last_applied_tree", "last_applied_at"], batch_size=1000
    )


def _analyze() -> None:
    """Planner statistics, as autovacuum gathers them a minute after such inserts."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def run(ctx: Context) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from syncworker.api.status import repos_status

    reset_state(ctx)
    _populate()
    sequential = ctx.count(100, 30)
    duration = ctx.count(15, 5)
    with ctx.stack() as stack:
        _, web = stack.web()
        url = web + PATH
        with requests.Session() as session:
            _analyze()
            first = session.get(url, timeout=30)
            first.raise_for_status()
            body = first.json()
            if body["count"] != REPOSITORIES:
                raise RuntimeError(f"status API lists {body['count']} repositories")
            seconds = []
            for _ in range(sequential):
                started = time.perf_counter()
                response = session.get(url, timeout=30)
                seconds.append(time.perf_counter() - started)
                response.raise_for_status()
        say(f"status API idle: p50 {sorted(seconds)[len(seconds) // 2] * 1000:.1f} ms")
        command = ["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", "--timeout", "10s", url]
        result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
        if result.returncode != 0:
            raise RuntimeError(f"wrk failed: {result.stderr[-2000:]}")
        wrk = parse_wrk(result.stdout)
        say(f"status API under wrk: {wrk}")

    with CaptureQueriesContext(connection) as queries:
        repos_status()
    sql_queries = len(queries.captured_queries)
    render = []
    for _ in range(5):
        started = time.perf_counter()
        json.dumps(repos_status()).encode()
        render.append(time.perf_counter() - started)
    # The answer rendered anew (what a request costs when no cached answer is at hand).
    _, profile = cprofile(lambda: json.dumps(repos_status()).encode(), top=10)
    return {
        "repositories": REPOSITORIES,
        "services": REPOSITORIES * SERVICES_PER_REPOSITORY,
        "deployments": REPOSITORIES * SERVICES_PER_REPOSITORY * DEPLOYMENTS_PER_SERVICE,
        "response_bytes": len(first.content),
        # The product keeps a rendered answer this long per process (0: not at all).
        "answer_cache_seconds": settings.GITOPS.get("STATUS_CACHE_SECONDS", 0),
        "sql_queries_per_request": sql_queries,
        "idle_ms": summarize([s * 1000 for s in seconds], digits=2),
        "render_anew_ms": summarize([s * 1000 for s in render], digits=2),
        "wrk_command": " ".join(command[:-1]) + " URL",
        "wrk": wrk,
        "wrk_output": result.stdout,
        "profile_one_request": profile,
    }


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for percent in ("50", "75", "90", "99"):
        match = re.search(rf"^\s*{percent}%\s+(\S+)", output, re.M)
        if match:
            found[f"p{percent}_ms"] = round(_ms(match.group(1)), 2)
    match = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    if match:
        found["mean_ms"] = round(_ms(match.group(1)), 2)
        found["max_ms"] = round(_ms(match.group(3)), 2)
    match = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if match:
        found["requests"] = int(match.group(1))
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match:
        found["requests_per_second"] = float(match.group(1))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    found["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: (.*)", output)
    found["socket_errors"] = match.group(1).strip() if match else ""
    if "p99_ms" not in found or "requests_per_second" not in found:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    return found


def targets(result: dict[str, Any]) -> dict[str, Any]:
    p99 = result["wrk"]["p99_ms"]
    return {
        "status_api_p99": {
            "target": "status API p99 <= 50 ms under wrk -t2 -c16 (1,000 repositories)",
            "value": f"{p99:.0f} ms at {result['wrk']['requests_per_second']:.0f} req/s",
            "met": p99 <= P99_TARGET_MS and not result["wrk"]["non_2xx"],
        }
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    wrk = result["wrk"]
    idle = result["idle_ms"]
    return [
        (
            f"GET {PATH}, {result['repositories']} repos, one at a time",
            f"p50 {idle['p50']:.1f} ms, p99 {idle['p99']:.1f} ms "
            f"({result['response_bytes']:,} B, {result['sql_queries_per_request']} SQL queries "
            f"to render; answers reused for {result.get('answer_cache_seconds', 0)} s per process)",
        ),
        (
            "  the answer rendered anew, in-process",
            f"p50 {result['render_anew_ms']['p50']:.1f} ms",
        ),
        (
            "  under wrk -t2 -c16",
            f"p50 {wrk['p50_ms']:.1f} ms, p99 {wrk['p99_ms']:.1f} ms, max {wrk['max_ms']:.0f} ms, "
            f"{wrk['requests_per_second']:.1f} req/s, non-2xx {wrk['non_2xx']}",
        ),
    ]


def details(result: dict[str, Any]) -> list[str]:
    profile = result["profile_one_request"]
    top = ", ".join(
        f"`{e['function']}` {e['own_s'] * 1000:.1f} ms" for e in profile["by_own_time"][:6]
    )
    cumulative = ", ".join(
        f"`{e['function']}` {e['cum_s'] * 1000:.1f} ms" for e in profile["by_cumulative"][:8]
    )
    return [
        f"**Status API**: rendering the answer anew in-process (cProfile) "
        f"{profile['total_s'] * 1000:.0f} ms; "
        f"by own time {top}; by cumulative time {cumulative}.",
        "",
    ]
