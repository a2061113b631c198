"""8. Dashboard: the first page ``GET /`` at 1,000 services under gunicorn, beside the
status API on the same data.

The database holds 100 repositories of 10 services each; each service has two
deployments, the newest succeeded for most, failed (with a two-line error) for every
20th, applying for every 50th; each service's last applied commit and time set as the
apply worker sets them. gunicorn serves ``gitops_site.wsgi`` with two sync workers, as
scripts/run starts it, read anonymously (the default GITOPS_STATUS_API_PUBLIC=1);
``ANALYZE`` runs first. Then, one request at a time, 100 each (quick: 30), interleaved
so load drifts hit both alike: the first page (50 services), the fragment its htmx poll
fetches every 5 s, the JSON ``gitops status`` reads (all 1,000 services), one service's
page, and the status API ``/v1/gitops/repos`` (its rendered answer reused for
GITOPS_STATUS_CACHE_SECONDS, as in production). Then ``wrk -t2 -c16 -d15s --latency
--timeout 10s`` (quick: -d5s) on the first page and on the status API. SQL queries per
request are counted in-process (Django's test client on the same database); rendering
the first page is profiled in-process with cProfile.

Target: first page p99 <= 100 ms one request at a time (a page that answers within
100 ms feels immediate), with the same number of queries as at 10 services.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from typing import Any

import requests

from bench.common import Context, cprofile, reset_state, say, summarize
from bench.status_api import parse_wrk

REPOSITORIES = 100
SERVICES_PER_REPOSITORY = 10
P99_TARGET_MS = 100.0
HTMX = {"HX-Request": "true", "HX-Target": "services-live"}
ERROR = "invalid bundle:\nd/a.yaml document 1: no kind"


def _populate() -> None:
    from syncworker.models import Cluster, Deployment, Repository, Service

    cluster = Cluster.objects.create(name="bench", applyer=Cluster.Applyer.FILE, is_default=True)
    repos = Repository.objects.bulk_create(
        Repository(
            key=f"repo-{i:03d}",
            provider="github",
            owner="acme",
            name=f"repo-{i:03d}",
            url=f"https://github.com/acme/repo-{i:03d}",
        )
        for i in range(REPOSITORIES)
    )
    services = Service.objects.bulk_create(
        Service(name=f"{repo.key}-svc-{k}", repository=repo, k8s_yaml_dir=f"d/{k}", cluster=cluster)
        for repo in repos
        for k in range(SERVICES_PER_REPOSITORY)
    )
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for n, svc in enumerate(services):
        newest = Deployment.Status.SUCCEEDED
        if n % 20 == 7:
            newest = Deployment.Status.FAILED
        elif n % 50 == 13:
            newest = Deployment.Status.APPLYING
        for d, status in enumerate((Deployment.Status.SUCCEEDED, newest)):
            moment = start + dt.timedelta(minutes=2 * n + d)
            final = status in Deployment.FINAL_STATES
            rows.append(
                Deployment(
                    service=svc,
                    cluster=cluster,
                    commit_sha=f"{n:032x}{d:08x}",
                    tree_sha=f"{n:040x}",
                    status=status,
                    error=ERROR if status == Deployment.Status.FAILED else "",
                    bundle_digest="b" * 64,
                    object_count=3,
                    queued_at=moment,
                    started_at=moment,
                    finished_at=moment + dt.timedelta(seconds=2) if final else None,
                )
            )
        svc.last_applied_commit = f"{n:032x}{0:08x}"
        svc.last_applied_at = start + dt.timedelta(minutes=2 * n, seconds=2)
    Deployment.objects.bulk_create(rows, batch_size=1000)
    applied = ["last_applied_commit", "last_applied_at"]
    Service.objects.bulk_update(services, applied, batch_size=1000)


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _paths() -> dict[str, tuple[str, dict[str, str]]]:
    one = f"/services/repo-{REPOSITORIES // 2:03d}-svc-7/"
    return {
        "first_page": ("/", {}),
        "poll_fragment": ("/", HTMX),
        "cli_status_json": ("/api/overview/", {}),
        "service_page": (one, {}),
        "status_api": ("/v1/gitops/repos", {}),
    }


def _count_queries() -> dict[str, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    counts = {}
    for name, (path, headers) in _paths().items():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code} in-process")
        counts[name] = len(captured.captured_queries)
    return counts


def _wrk(url: str, duration: int) -> tuple[list[str], dict[str, Any], str]:
    command = ["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", "--timeout", "10s", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr[-2000:]}")
    return command, parse_wrk(result.stdout), result.stdout


def run(ctx: Context) -> dict[str, Any]:
    from django.conf import settings
    from django.test import Client

    reset_state(ctx)
    _populate()
    _analyze()
    sequential = ctx.count(100, 30)
    duration = ctx.count(15, 5)
    paths = _paths()
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    sizes: dict[str, int] = {}
    with ctx.stack() as stack:
        _, web = stack.web()
        with requests.Session() as session:
            for path, headers in paths.values():  # warm both workers
                for _ in range(2):
                    session.get(web + path, headers=headers, timeout=30).raise_for_status()
            for _ in range(sequential):
                for name, (path, headers) in paths.items():
                    started = time.perf_counter()
                    response = session.get(web + path, headers=headers, timeout=30)
                    seconds[name].append(time.perf_counter() - started)
                    response.raise_for_status()
                    sizes[name] = len(response.content)
        medians = {n: sorted(s)[len(s) // 2] * 1000 for n, s in seconds.items()}
        say("dashboard idle: " + ", ".join(f"{n} p50 {ms:.1f} ms" for n, ms in medians.items()))
        command, wrk_page, page_out = _wrk(web + "/", duration)
        _, wrk_status, status_out = _wrk(web + "/v1/gitops/repos", duration)
        say(f"first page under wrk: {wrk_page}; status API under wrk: {wrk_status}")

    first = Client(HTTP_HOST="127.0.0.1").get("/").content.decode()
    if "1000 services" not in first:
        raise RuntimeError("the first page does not list 1000 services")
    queries = _count_queries()
    _, profile = cprofile(lambda: Client(HTTP_HOST="127.0.0.1").get("/"), top=10)
    return {
        "repositories": REPOSITORIES,
        "services": REPOSITORIES * SERVICES_PER_REPOSITORY,
        "services_per_page": 50,
        "status_answer_cache_seconds": settings.GITOPS.get("STATUS_CACHE_SECONDS", 0),
        "response_bytes": sizes,
        "sql_queries_per_request": queries,
        "idle_ms": {n: summarize([s * 1000 for s in v], digits=2) for n, v in seconds.items()},
        "wrk_command": " ".join(command[:-1]) + " URL",
        "wrk_first_page": wrk_page,
        "wrk_status_api": wrk_status,
        "wrk_output": {"first_page": page_out, "status_api": status_out},
        "profile_first_page": profile,
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    p99 = result["idle_ms"]["first_page"]["p99"]
    return {
        "dashboard_first_page_p99": {
            "target": "dashboard first page p99 <= 100 ms one request at a time (1,000 services)",
            "value": f"{p99:.0f} ms ({result['sql_queries_per_request']['first_page']} queries)",
            "met": p99 <= P99_TARGET_MS,
        }
    }


LABELS = {
    "first_page": "GET / (first page, 50 of 1,000 services)",
    "poll_fragment": "  its htmx poll (the live fragment)",
    "cli_status_json": "  GET /api/overview/ (gitops status: all 1,000)",
    "service_page": "  GET /services/NAME/",
    "status_api": "  GET /v1/gitops/repos, same data (100 repos)",
}


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, label in LABELS.items():
        idle = result["idle_ms"][name]
        rows.append(
            (
                f"{label}, one at a time",
                f"p50 {idle['p50']:.1f} ms, p99 {idle['p99']:.1f} ms "
                f"({result['response_bytes'][name]:,} B, "
                f"{result['sql_queries_per_request'][name]} SQL queries)",
            )
        )
    for name, label in (("wrk_first_page", "GET /"), ("wrk_status_api", "GET /v1/gitops/repos")):
        wrk = result[name]
        rows.append(
            (
                f"  {label} under wrk -t2 -c16",
                f"p50 {wrk['p50_ms']:.1f} ms, p99 {wrk['p99_ms']:.1f} ms, "
                f"{wrk['requests_per_second']:.1f} req/s, non-2xx {wrk['non_2xx']}",
            )
        )
    return rows


def details(result: dict[str, Any]) -> list[str]:
    profile = result["profile_first_page"]
    top = ", ".join(
        f"`{e['function']}` {e['own_s'] * 1000:.1f} ms" for e in profile["by_own_time"][:6]
    )
    return [
        f"**Dashboard**: rendering the first page in-process (cProfile) "
        f"{profile['total_s'] * 1000:.0f} ms; by own time {top}.",
        "",
    ]
