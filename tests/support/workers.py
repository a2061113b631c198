"""Real ``celery worker`` processes for the tests, on the test database.

Each runs with the network guard of ``tests.support.netguard`` (loopback only), and
``drain_queues`` empties the broker so that a worker never picks up what an earlier
test module left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crashed node would."""
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_worker(
    database_url: str, *, queues: str, concurrency: int = 2, env: dict[str, str] | None = None
) -> WorkerProcess:
    """Start a worker and wait until it answers a ping."""
    from gitops_site.celery import app

    name = f"test-{uuid.uuid4().hex[:6]}@%h"
    log_path = ROOT / "var" / f"test-worker-{name.split('@')[0]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.netguard", "celery", "-A", "gitops_site",
         "worker", "-n", name,
         "-Q", queues, "--concurrency", str(concurrency), "--loglevel", "INFO",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
        stdout=open(log_path, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    worker = WorkerProcess(name.replace("%h", os.uname().nodename), proc, log_path)
    for _ in range(60):
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
        if app.control.ping(destination=[worker.name], timeout=0.5):
            return worker
    worker.stop()
    raise RuntimeError(f"celery worker did not answer: {log_path.read_text()[-3000:]}")


QUEUES = ("default", "poll", "fetch", "apply")
# kombu's Redis transport: a queue's messages of priority p > 0 live under
# "<queue>\x06\x16<p>"; unacknowledged ones (and their redelivery times) in these keys.
_PRIORITY_SEPARATOR = "\x06\x16"
_UNACKED_KEYS = ("unacked", "unacked_index", "unacked_mutex")


def drain_queues() -> int:
    """Drop every task message in the broker: waiting, unacknowledged or due for
    redelivery. Returns how many keys held some."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        keys: list[bytes | str] = list(_UNACKED_KEYS)
        for queue in QUEUES:
            keys.append(queue)
            keys.extend(client.scan_iter(match=f"{queue}{_PRIORITY_SEPARATOR}*"))
        return int(client.delete(*keys))
    finally:
        client.close()
