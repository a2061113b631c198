"""A cluster's apply lease: a short Redis lock, renewed by a keeper thread while held.

Short, so that a worker that dies (SIGKILL, a lost node) frees its cluster within
``APPLY_LOCK_TTL`` seconds and the recovery sweep can resume; renewed every third of it
while an apply runs, so a live apply never loses it. Taking it never waits: whoever
holds a cluster applies its deployments in turn (``pipeline.deploying``).
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings

from syncworker.pipeline.redisconn import redis_client

log = logging.getLogger(__name__)


def lease_key(cluster_id: int) -> str:
    """The Redis key of a cluster's apply lease; the recovery sweep reads it too."""
    return f"gitops:apply-lock:{cluster_id}"


class Lease:
    def __init__(self, cluster_id: int) -> None:
        self.cluster_id = cluster_id
        self._lock = redis_client().lock(
            lease_key(cluster_id), timeout=settings.GITOPS["APPLY_LOCK_TTL"], thread_local=False
        )
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; never waits."""
        if not self._lock.acquire(blocking=False):
            return False
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep, args=(self._stop,), daemon=True)
        self._keeper.start()
        return True

    def release(self) -> None:
        if self._keeper is None:
            return
        self._stop.set()
        self._keeper.join()
        self._keeper = None
        try:
            self._lock.release()
        except redis.exceptions.LockError:
            log.warning("apply lease of cluster %s expired before release", self.cluster_id)

    def _keep(self, stop: threading.Event) -> None:
        while not stop.wait(settings.GITOPS["APPLY_LOCK_TTL"] / 3):
            try:
                self._lock.reacquire()
            except redis.exceptions.RedisError as exc:
                log.warning("could not extend the apply lease: %s", exc)
