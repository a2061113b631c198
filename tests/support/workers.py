"""Our own processes, for the tests and the benchmarks: real ``celery worker`` processes,
waited for until they answer a ping, and any other command of ours (gunicorn, beat).
Each runs in a session of its own, so stopping it stops its children too, and writes its
output to a log file.

The tests' workers run behind the network guard of ``tests.support.netguard`` (loopback
only), and ``drain_queues`` empties the broker so that a worker never picks up what an
earlier test module left behind; the benchmarks' run as scripts/run starts them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent
# How the tests' workers start: behind the network guard, and without the start-up
# exchanges with other workers, which they do not need. scripts/run's: PLAIN, no options.
GUARDED = (sys.executable, "-m", "tests.support.netguard", "celery")
PLAIN = (sys.executable, "-m", "celery")
QUICK_START = ("--without-gossip", "--without-mingle")


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crashed node would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def spawn(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path | None = None
) -> WorkerProcess:
    """Start a command in the repository root with its output in ``<log_dir>/<name>.log``."""
    log_dir = log_dir or ROOT / "var"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(name, proc, log)


def start_worker(
    database_url: str | None = None,
    *,
    queues: str,
    concurrency: int = 2,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    name: str = "test",
    launch: Sequence[str] = GUARDED,
    options: Sequence[str] = QUICK_START,
    log_dir: Path | None = None,
    timeout: float = 60,
) -> WorkerProcess:
    """Start a worker and wait until it answers a ping. It runs with ``environ`` (default:
    this process's environment) plus ``env``, on ``database_url`` when one is given."""
    from gitops_site.celery import app

    tag = uuid.uuid4().hex[:6]
    node = f"{name}-{tag}@%h"
    full_env = {**(os.environ if environ is None else environ), **(env or {})}
    if database_url is not None:
        full_env["DATABASE_URL"] = database_url
    argv = [*launch, "-A", "gitops_site", "worker", "-n", node,
            "-Q", queues, "-c", str(concurrency), "-l", "INFO", *options]  # fmt: skip
    worker = spawn(f"{name}-worker-{tag}", argv, env=full_env, log_dir=log_dir)
    worker.name = node.replace("%h", os.uname().nodename)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{worker.tail()}")
            if app.control.ping(destination=[worker.name], timeout=0.5):
                return worker
        raise RuntimeError(f"celery worker did not answer a ping:\n{worker.tail()}")
    except BaseException:
        worker.stop()
        raise


def forget_broker_connections() -> None:
    """Drop this process's pooled broker connections, as Celery and kombu do after a
    fork. After the broker restarted each is a socket to a server that is gone, and a
    control command (a ping) read on one fails with "Connection closed by server"
    instead of reconnecting."""
    from kombu import pools

    from gitops_site.celery import app

    pools.reset()  # closes every pool kombu keeps for this process, and forgets them
    celery: Any = app  # private attributes: the app's handles on those pools
    celery._pool = None
    amqp = celery.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


QUEUES = ("default", "poll", "fetch", "apply", "health", "drift")
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
