"""What the benchmarks share: their context (services, environment), the cluster and Git
set-up, the counters they read, statistics, profiling, and the generated workloads.

What a benchmark starts (servers, gunicorn, workers, beat) it starts through
``ctx.stack()``, the tests' own ``tests.support.stack.Stack``: everything listens on
loopback and is stopped when the stack closes, whatever happens.
"""

from __future__ import annotations

import contextlib
import cProfile
import glob
import hashlib
import hmac
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from tests.support.gitserver import GitHttpServer, WorkingCopy
from tests.support.kubeenv import KubeTestEnv
from tests.support.procs import stop_process, wait_until
from tests.support.services import PostgresServer, RedisServer
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
MONITOR_ROLE = "benchmon"
T = TypeVar("T")
W = TypeVar("W", bound="InThread")
_STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr: the table on stdout stays clean."""
    print(f"[bench {time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- services ----------------------------------------------------------------------------------


class BenchPostgres(PostgresServer):
    """The test bed's PostgreSQL, restarted once with ``pg_stat_statements`` preloaded so
    the benchmarks can count the statements the system runs. ``statements`` is False when
    the extension could not be enabled (then only ``pg_stat_database`` is read)."""

    statements = False
    statements_problem = ""

    @property
    def monitor_url(self) -> str:
        return f"postgres://{MONITOR_ROLE}@127.0.0.1:{self.port}/{self.database}"

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        command = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        command += ["-d", database, "-qAtc", sql]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def start(self) -> BenchPostgres:
        super().start()
        # A role of its own for the benchmark's reads, so they can be told from the system's.
        self.psql(f"CREATE ROLE {MONITOR_ROLE} LOGIN SUPERUSER")
        try:
            self.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        except subprocess.CalledProcessError as exc:
            self.statements_problem = exc.stderr.strip()
            return self
        stop_process(self.proc)  # the server only; its directory stays
        self.proc = self._spawn()
        wait_until(self._ready, timeout=30, what="postgres restart")
        try:
            self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", database=self.database)
            self.statements = True
        except subprocess.CalledProcessError as exc:
            self.statements_problem = exc.stderr.strip()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The same command line as tests.support.services.PostgresServer.start.
        binary = (
            shutil.which("postgres") or sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1]
        )
        owner = self._as_owner()
        command = [binary, "-D", str(self.dir / "data"), "-p", str(self.port)]
        command += ["-h", "127.0.0.1", "-k", str(self.dir), *_TEST_BED_SETTINGS]
        with open(self.dir / "postgres.log", "ab") as log:
            return subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **owner,  # type: ignore[call-overload]
            )


# The settings tests.support.services gives PostgreSQL: fast, not crash-safe.
_TEST_BED_SETTINGS = ["-c", "fsync=off", "-c", "synchronous_commit=off"]
_TEST_BED_SETTINGS += ["-c", "full_page_writes=off", "-c", "max_connections=200"]


@dataclass
class Context:
    """One run of the suite: its services, scratch directory and environment."""

    quick: bool
    workdir: Path
    redis: RedisServer
    postgres: BenchPostgres
    secret_key: str
    #: The scale benchmark's size when given (``--services``), else its default.
    services: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def django_env(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "gitops_site.settings",
            "DATABASE_URL": self.postgres.url,
            "SECRET_KEY": self.secret_key,
            "CELERY_BROKER_URL": self.redis.url,
            "CELERY_RESULT_BACKEND": self.redis.url,
            # Workspace (Git caches), artifacts and rendered files of this run only.
            "GITOPS_VAR_DIR": str(self.workdir / "var"),
        }

    @property
    def proc_env(self) -> dict[str, str]:
        """The environment of the processes we start: ours plus the Django settings,
        otherwise the defaults scripts/run gives them."""
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_DEBUG", "LOG_LEVEL")}
        return {**env, **self.django_env}

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def stack(self) -> Stack:
        """What a benchmark starts, in this run's environment, logs in the scratch
        directory; all stopped when it closes."""
        return Stack(env=self.proc_env, logs=self.workdir / "logs")


def setup_django(ctx: Context) -> None:
    """Settings from the bench services, ``django.setup()`` and ``migrate``, in-process."""
    import logging

    os.environ.pop("DJANGO_DEBUG", None)  # DEBUG keeps every query in memory
    os.environ.update(ctx.django_env)
    (ctx.workdir / "var" / "static").mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    logging.getLogger().setLevel(logging.WARNING)


def reset_state(ctx: Context) -> None:
    """An empty database (migrated) and an empty broker before each benchmark."""
    import redis
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    with contextlib.closing(redis.Redis.from_url(ctx.redis.url)) as client:
        client.flushall()


class InThread:
    """Runs ``_run`` in a daemon thread from ``with`` to its end; ``_stop`` is set at the
    end (a sampler's loop waits on it between samples)."""

    def __enter__(self: W) -> W:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def best_of(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """The shortest time of ``repeat`` calls of ``fn`` (in seconds), and its last answer."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


# -- profiling ---------------------------------------------------------------------------------


def short_name(filename: str) -> str:
    """A source file's path without the site-packages or repository prefix."""
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1].removeprefix(".11/").removeprefix(".10/")
    return filename.removeprefix(str(ROOT) + "/")


# Frames that only pass a call on (request handling, middleware, the test client, our own
# lambdas): left out of the cumulative listing, where they would fill the top.
_WRAPPERS = re.compile(
    r"django/(test|core/handlers|middleware|contrib|views)/|django/utils/deprecation|whitenoise/|"
    r"rest_framework/views\.py|contextlib\.py|bench/|^<(lambda|listcomp)>|^<built-in method "
    r"builtins\.exec>|django/utils/decorators\.py|django/views/decorators/"
)


def cprofile(fn: Callable[[], T], top: int = 10) -> tuple[T, dict[str, Any]]:
    """Run ``fn`` under cProfile (the calling thread only); its top functions by own
    time, and by cumulative time leaving out frames that only pass calls on."""
    profiler = cProfile.Profile()
    result = profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    entries = []
    for (filename, line, func), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        name = f"{func} ({short_name(filename)}:{line})" if filename != "~" else func
        entries.append({"function": name, "calls": calls, "own_s": own, "cum_s": cumulative})
    total = sum(e["own_s"] for e in entries)

    def rounded(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**e, "own_s": round(e["own_s"], 4), "cum_s": round(e["cum_s"], 4)} for e in items]

    return result, {
        "total_s": round(total, 4),
        "by_own_time": rounded(sorted(entries, key=lambda e: -e["own_s"])[:top]),
        "by_cumulative": rounded(
            sorted(
                (e for e in entries if not _WRAPPERS.search(e["function"])),
                key=lambda e: -e["cum_s"],
            )[:top]
        ),
    }


# -- Kubernetes ------------------------------------------------------------------------------


class Kube:
    """Plain HTTP reads and writes against a KubeTestEnv, for setting up and checking."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {env.token}"
        # Given with each request: REQUESTS_CA_BUNDLE in the environment would win over
        # a session-wide setting.
        self.verify = str(env.ca_file)

    def close(self) -> None:
        self.session.close()

    def get(self, path: str, **params: str) -> requests.Response:
        return self.session.get(
            self.env.server + path, params=params, timeout=30, verify=self.verify
        )

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        response = self.session.post(
            f"{self.env.server}/api/v1/namespaces", json=body, timeout=30, verify=self.verify
        )
        if response.status_code not in (201, 409):
            raise RuntimeError(f"namespace {name}: HTTP {response.status_code} {response.text}")

    def count(self, path: str) -> int:
        """How many objects a list path holds, from one item and remainingItemCount."""
        response = self.get(path, limit="1")
        response.raise_for_status()
        data = response.json()
        return len(data["items"]) + int(data["metadata"].get("remainingItemCount") or 0)

    def server_version(self) -> str:
        return str(self.get("/version").json().get("gitVersion", ""))


def start_kube(ctx: Context, stack: Stack) -> tuple[KubeTestEnv, Kube]:
    """A fresh kube-apiserver (its and kubectl's versions recorded) and a client for it."""
    env = stack.start(KubeTestEnv())
    kube = Kube(env)
    stack.callback(kube.close)
    ctx.facts["kubernetes_server"] = kube.server_version()
    result = subprocess.run(
        [str(env.kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True
    )
    with contextlib.suppress(ValueError, KeyError):
        ctx.facts["kubectl"] = json.loads(result.stdout)["clientVersion"]["gitVersion"]
    return env, kube


def start_gitops_on_kube(
    ctx: Context, stack: Stack, *, namespace: str, repo: str
) -> tuple[Kube, WorkingCopy, Any]:
    """A fresh apiserver holding only ``namespace``, the default Cluster row applying to
    it with the kubernetes applyer, and a working copy of a new repository ``repo`` on
    a Git smart-HTTP server."""
    from syncworker.models import Cluster

    env, kube = start_kube(ctx, stack)
    kube.create_namespace(namespace)
    git = stack.start(GitHttpServer())
    copy = WorkingCopy(git.create_repo(repo))
    stack.callback(copy.cleanup)
    cluster = Cluster.objects.create(
        name="bench",
        applyer=Cluster.Applyer.KUBERNETES,
        settings={"kubeconfig": str(env.kubeconfig)},
        is_default=True,
    )
    return kube, copy, cluster


# -- workloads ---------------------------------------------------------------------------------


def _meta(name: str, namespace: str | None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def config_map(name: str, namespace: str | None = None, rev: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, labels={"app": name}),
        "data": {
            "revision": str(rev),
            "LOG_LEVEL": "info",
            "settings.ini": f"[server]\nport = 8080\nworkers = 4\nname = {name}\n",
        },
    }


def deployment(name: str, namespace: str | None = None, rev: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels={"app": name}),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"revision": str(rev)}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.invalid/app:1.0",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [{"name": "REVISION", "value": str(rev)}],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                        }
                    ]
                },
            },
        },
    }


def service(name: str, namespace: str | None = None, rev: int = 0) -> dict[str, Any]:
    # Headless: the test server's service IP range (a /24) would run out of addresses.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels={"app": name}),
        "spec": {
            "clusterIP": "None",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


# Ten objects: four ConfigMaps, three Deployments, three Services.
_PATTERN = (
    config_map,
    config_map,
    config_map,
    config_map,
    deployment,
    deployment,
    deployment,
    service,
    service,
    service,
)


def mixed_objects(
    count: int, prefix: str, namespace: str | None = None, rev: int = 0
) -> list[dict[str, Any]]:
    """``count`` objects, 40% ConfigMaps, 30% Deployments, 30% Services."""
    return [_PATTERN[i % 10](f"{prefix}-{i:04d}", namespace, rev) for i in range(count)]


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(objects, Dumper=dumper, sort_keys=False, explicit_start=True)


# -- webhooks ----------------------------------------------------------------------------------


def send_push_webhook(
    session: requests.Session, base_url: str, key: str, secret: str, commit: str
) -> requests.Response:
    """What GitHub sends on a push: a signed ``push`` event for refs/heads/main."""
    body = json.dumps(
        {"ref": "refs/heads/main", "after": commit, "repository": {"full_name": f"bench/{key}"}}
    ).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return session.post(
        f"{base_url}/v1/webhooks/github/{key}",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": uuid.uuid4().hex[:6],
            "X-Hub-Signature-256": signature,
        },
        timeout=30,
    )
