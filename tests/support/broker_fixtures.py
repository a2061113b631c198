"""A Redis broker of a test's own, which the test may kill and start again: the web
process's and the workers' behaviour when the broker goes away is tested against it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from gitops_site.celery import app
from tests.support.services import RedisServer


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A Redis of this test's own that the test may stop and start. Meanwhile the
    Celery app uses it as broker and result store, as a default installation does (its
    pools and backend are swapped, and put back afterwards)."""
    server = RedisServer().start()
    # Celery reads these variables before its configuration (the test bed sets them).
    monkeypatch.setenv("CELERY_BROKER_URL", server.url)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", server.url)
    celery: Any = app  # private attributes: the pools and the per-thread backend
    conf = celery.conf
    saved = (conf.broker_url, conf.result_backend, celery._pool, celery.amqp._producer_pool)
    saved_backends = (celery._backend_cache, celery._local.__dict__.pop("backend", None))
    celery._backend_cache = None
    conf.broker_url = conf.result_backend = server.url
    celery._pool = celery.amqp._producer_pool = None
    try:
        yield server
    finally:
        if celery._pool is not None:
            celery._pool.force_close_all()
        conf.broker_url, conf.result_backend, celery._pool, celery.amqp._producer_pool = saved
        # A test that forgot every pooled connection (forget_broker_connections) closed
        # the saved pools too: the next use makes new ones.
        if getattr(celery._pool, "_closed", False):
            celery._pool = None
        if getattr(celery.amqp._producer_pool, "_closed", False):
            celery.amqp._producer_pool = None
        celery._local.__dict__.pop("backend", None)
        celery._backend_cache = saved_backends[0]
        if saved_backends[1] is not None:
            celery._local.backend = saved_backends[1]
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


def queued(server: RedisServer, queue: str) -> int:
    return int(redis.Redis.from_url(server.url).llen(queue))


def restart(server: RedisServer) -> RedisServer:
    """A new, empty Redis on the port of ``server`` (stopped or killed)."""
    again = RedisServer()
    again.port = server.port
    return again.start()
