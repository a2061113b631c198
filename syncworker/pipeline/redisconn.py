"""The Redis connection the pipeline uses for locks and counters: the Celery broker's."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, health_check_interval=30)


def redis_client() -> redis.Redis:
    return _client(settings.CELERY_BROKER_URL)
