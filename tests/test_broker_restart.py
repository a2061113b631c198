"""A worker lives through its broker's restart: Redis killed while a task runs, down for
a moment, then back empty on the same port. The worker must reconnect and take tasks
again (nothing restarts it: scripts/run stops everything when one process exits), so the
recovery sweep it runs can re-send what the broker lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from gitops_site.celery import app
from syncworker.models import Repository
from syncworker.pipeline import handoff
from tests.support.broker_fixtures import restart
from tests.support.delayproxy import DelayProxy
from tests.support.gitserver import WorkingCopy
from tests.support.procs import wait_until
from tests.support.services import RedisServer
from tests.support.workers import WorkerProcess, forget_broker_connections, start_worker

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "broker-restart-test"
ROUNDS = 4


@pytest.fixture
def slow_git(git_repo: WorkingCopy) -> Iterator[tuple[DelayProxy, str]]:
    """The test repository behind a proxy that can hold every byte: a poll of it runs
    for as long as the proxy is paused."""
    git_repo.commit({"deploy/web/cm.yaml": "kind: ConfigMap\n"}, message="first")
    address = urlsplit(git_repo.url)
    proxy = DelayProxy((address.hostname or "127.0.0.1", address.port or 80)).start()
    yield proxy, address._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    proxy.stop()


@pytest.fixture
def worker(broker: RedisServer, worker_database_url: str) -> Iterator[WorkerProcess]:
    started = start_worker(
        worker_database_url,
        queues=QUEUE,
        concurrency=2,  # as scripts/run starts them: one task runs, one slot polls
        name="restart",
        env={"CELERY_BROKER_URL": broker.url, "CELERY_RESULT_BACKEND": broker.url},
    )
    yield started
    started.stop()


def received(worker: WorkerProcess) -> int:
    return sum(
        1
        for line in worker.tail(1_000_000).splitlines()
        if "poll_repository[" in line and line.endswith("received")
    )


def test_a_worker_reconnects_after_redis_dies_under_a_running_task(
    broker: RedisServer, worker: WorkerProcess, slow_git: tuple[DelayProxy, str]
) -> None:
    proxy, url = slow_git
    repo = Repository.objects.create(key="slow", provider="git", url=url, poll_interval=3600)
    servers = [broker]  # each restart is a new server (directory) on the same port
    try:
        for n in range(ROUNDS):
            with proxy.paused():
                app.send_task(
                    handoff.POLL, args=[repo.pk], kwargs={"trigger": "webhook"}, queue=QUEUE
                )
                # One poll received per round so far (one server per round so far).
                wait_until(lambda: received(worker) >= len(servers), timeout=30, what="the poll")
                # The poll is in flight, its message unacknowledged, when Redis dies and
                # comes back empty, as a pod restarted without persistence.
                server = servers[-1]
                assert server.proc is not None
                server.proc.kill()
                server.proc.wait(timeout=10)
                if n % 2:
                    time.sleep(1)  # the worker cleans up while nothing listens on the port
                servers.append(restart(server))
                forget_broker_connections()
            wait_until(
                lambda: (
                    worker.proc.poll() is not None
                    or bool(app.control.ping(destination=[worker.name], timeout=0.5))
                ),
                timeout=60,
                what="the worker back on the broker",
            )
            assert worker.proc.poll() is None, f"the worker exited:\n{worker.tail()}"
    finally:
        for server in servers:
            server.stop()
