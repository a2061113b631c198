"""Counters shared by every worker process and host, kept in Redis.

Workers run in many processes on many machines, so in-process Prometheus counters would
be scattered; HINCRBY on one hash per counter is atomic and cheap, and the web process
exports the hashes at scrape time (see syncworker/api/metrics.py).
"""

from __future__ import annotations

import logging
import time

import redis

from syncworker.pipeline.redisconn import redis_client

log = logging.getLogger(__name__)

POLLS = "gitops:metrics:polls"
POLL_FAILURES = "gitops:metrics:poll_failures"
LAST_SUCCESSFUL_SYNC = "gitops:metrics:last_sync"
APPLY_SECONDS = "gitops:metrics:apply_seconds"
APPLY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DEPLOYMENTS = "gitops:metrics:deployments"


def _safely(operation: str, *commands: tuple[str, str, str, float]) -> None:
    # Metrics must never fail a poll or a deployment.
    try:
        pipe = redis_client().pipeline(transaction=False)
        for kind, key, field, value in commands:
            if kind == "incr":
                pipe.hincrbyfloat(key, field, value)
            else:
                pipe.hset(key, field, value)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics: %s not recorded: %s", operation, exc)


def record_poll(repository: str, *, ok: bool) -> None:
    commands = [("incr", POLLS, repository, 1.0)]
    if not ok:
        commands.append(("incr", POLL_FAILURES, repository, 1.0))
    _safely("poll", *commands)


def record_deployment(status: str, *, reason: str, seconds: float | None, repository: str) -> None:
    # One field per status and reason: "failed|render", "succeeded|".
    commands = [("incr", DEPLOYMENTS, f"{status}|{reason}", 1.0)]
    if seconds is not None:
        # A histogram stored per bucket (the first bound at or above the value), made
        # cumulative at scrape time: two writes per deployment instead of one per bound.
        commands.append(("incr", APPLY_SECONDS, "sum", seconds))
        commands.append(("incr", APPLY_SECONDS, bucket_field(seconds), 1.0))
    if status == "succeeded":
        commands.append(("set", LAST_SUCCESSFUL_SYNC, repository, time.time()))
    _safely("deployment", *commands)


def bucket_field(seconds: float) -> str:
    """The field of the histogram bucket ``seconds`` falls in: ``in:<bound>`` or ``in:+Inf``."""
    bound = next((b for b in APPLY_BUCKETS if seconds <= b), None)
    return f"in:{bound if bound is not None else '+Inf'}"


def cumulative_buckets(fields: dict[str, float]) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets (``+Inf`` last, the count) from per-bucket fields."""
    buckets, total = [], 0.0
    for bound in APPLY_BUCKETS:
        total += fields.get(f"in:{bound}", 0.0)
        buckets.append((str(bound), total))
    buckets.append(("+Inf", total + fields.get("in:+Inf", 0.0)))
    return buckets
