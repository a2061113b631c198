"""The system on loopback, for the tests and the benchmarks alike: a context manager that
starts any part on demand, on free ports, and stops everything it started when it
closes, last started first, whatever happens (a part that fails half-way through its
start included).

    with Stack() as stack:
        redis = stack.start(RedisServer())
        git = stack.start(GitHttpServer())
        kube = stack.start(KubeTestEnv())
        web_url = stack.web()
        stack.worker("fetch"), stack.worker("apply"), stack.beat(schedule)

Servers are those of tests/support (Redis, PostgreSQL, the Git server, the GitHub
stand-in, the kube-apiserver: anything with ``start()`` and ``stop()``); processes are
ours, with the command lines scripts/run gives them (not behind the tests' network guard),
in the environment given (default: this process's).
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, TypeVar

import requests

from tests.support.procs import free_port, wait_until
from tests.support.workers import PLAIN, WorkerProcess, spawn, start_worker

# scripts/run's workers: queues and processes.
WORKERS = {"fetch": ("default,poll,fetch,health,drift", 2), "apply": ("apply", 2)}


class Server(Protocol):
    def start(self) -> Server: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


class Stack(contextlib.ExitStack):
    def __init__(self, env: Mapping[str, str] | None = None, logs: Path | None = None) -> None:
        super().__init__()
        self.env = dict(os.environ if env is None else env)
        self.logs = logs

    def start(self, server: S) -> S:
        self.callback(server.stop)  # first: a start that fails half-way is cleaned up too
        server.start()
        return server

    def process(self, name: str, argv: list[str]) -> WorkerProcess:
        started = spawn(name, argv, env=self.env, log_dir=self.logs)
        self.callback(started.stop)
        return started

    def worker(self, kind: str) -> WorkerProcess:
        """A Celery worker as scripts/run starts it: ``fetch`` consumes default, poll and
        fetch with two processes, ``apply`` the apply queue with two."""
        queues, concurrency = WORKERS[kind]
        worker = start_worker(queues=queues, concurrency=concurrency, environ=self.env, name=kind,
                              launch=PLAIN, options=(), log_dir=self.logs, timeout=90)  # fmt: skip
        self.callback(worker.stop)
        return worker

    def web(self) -> tuple[WorkerProcess, str]:
        """gunicorn as scripts/run starts it (two sync workers), and its URL once it is
        ready (``/readyz``)."""
        port = free_port()
        gunicorn = Path(sys.executable).with_name("gunicorn")
        argv = [str(gunicorn)] if gunicorn.exists() else [sys.executable, "-m", "gunicorn"]
        argv += ["gitops_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--access-logfile", "-"]
        web = self.process(f"gunicorn-{port}", argv)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if web.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{web.tail()}")
            try:
                return requests.get(f"{url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout=60, what="gunicorn")
        return web, url

    def beat(self, schedule: Path) -> WorkerProcess:
        argv = [*PLAIN, "-A", "gitops_site", "beat", "-l", "INFO"]
        beat = self.process(f"beat-{uuid.uuid4().hex[:6]}", [*argv, "-s", str(schedule)])
        wait_until(
            lambda: "beat: Starting" in beat.tail(20000) or beat.proc.poll() is not None,
            timeout=60,
            what="celery beat",
        )
        if beat.proc.poll() is not None:
            raise RuntimeError(f"celery beat exited:\n{beat.tail()}")
        return beat
