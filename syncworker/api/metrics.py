"""``/metrics`` in the Prometheus text format.

Counters written by workers live in Redis (syncworker/pipeline/metrics.py); state lives
in the database. Both are read at scrape time by one collector, so every web replica
exports the same numbers whatever process did the work.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import metrics as counters
from syncworker.pipeline.redisconn import redis_client

QUEUES = ("poll", "fetch", "apply", "drift", "default")


def _floats(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {key.decode(): float(value) for key, value in raw.items()}


class GitopsCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._from_database()
        try:
            yield from self._from_redis()
        except redis.RedisError:
            up = GaugeMetricFamily("gitops_metrics_store_up", "Redis counters readable")
            up.add_metric([], 0)
            yield up

    def _from_database(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "gitops_deployments", "Deployments in the history by status", labels=["status"]
        )
        counts = dict(Deployment.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in Deployment.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        failures = GaugeMetricFamily(
            "gitops_repository_consecutive_failures",
            "Failed polls in a row per repository",
            labels=["repository"],
        )
        for key, value in Repository.objects.values_list("key", "consecutive_failures"):
            failures.add_metric([key], value)
        yield failures
        out_of_sync = GaugeMetricFamily(
            "gitops_service_out_of_sync",
            "1 when the last drift check found drift",
            labels=["service"],
        )
        drifted = GaugeMetricFamily(
            "gitops_service_drifted_objects",
            "Objects drifted at the last check",
            labels=["service"],
        )
        for name, state, drift in Service.objects.values_list("name", "sync_status", "drift"):
            out_of_sync.add_metric([name], 1 if state == Service.SyncStatus.OUT_OF_SYNC else 0)
            drifted.add_metric([name], len(drift) if isinstance(drift, list) else 0)
        yield out_of_sync
        yield drifted

    def _from_redis(self) -> Iterator[Metric]:
        client = redis_client()
        pipe = client.pipeline(transaction=False)
        for key in (
            counters.POLLS,
            counters.POLL_FAILURES,
            counters.DEPLOYMENTS,
            counters.APPLY_SECONDS,
            counters.LAST_SUCCESSFUL_SYNC,
        ):
            pipe.hgetall(key)
        for queue in QUEUES:
            pipe.llen(queue)
        polls, poll_failures, finished, apply_seconds, last_sync, *depths = pipe.execute()

        for name, doc, data in (
            ("gitops_polls", "Polls per repository", polls),
            ("gitops_poll_failures", "Failed polls per repository", poll_failures),
        ):
            family = CounterMetricFamily(name, doc, labels=["repository"])
            for repo, value in sorted(_floats(data).items()):
                family.add_metric([repo], value)
            yield family
        done = CounterMetricFamily(
            "gitops_deployments_finished",
            "Deployments finished by status and reason",
            labels=["status", "reason"],
        )
        for field, value in sorted(_floats(finished).items()):
            status, _, reason = field.partition("|")
            done.add_metric([status, reason], value)
        yield done

        seconds = _floats(apply_seconds)
        buckets = [(str(b), seconds.get(f"le:{b}", 0.0)) for b in counters.APPLY_BUCKETS]
        buckets.append(("+Inf", seconds.get("count", 0.0)))
        yield HistogramMetricFamily(
            "gitops_apply_duration_seconds",
            "Time from the start of an apply to its end",
            buckets=buckets,
            sum_value=seconds.get("sum", 0.0),
        )
        synced = GaugeMetricFamily(
            "gitops_last_successful_sync_timestamp_seconds",
            "When a deployment of the repository last succeeded (Unix time)",
            labels=["repository"],
        )
        for repo, value in sorted(_floats(last_sync).items()):
            synced.add_metric([repo], value)
        yield synced
        depth = GaugeMetricFamily("gitops_queue_depth", "Tasks waiting per queue", labels=["queue"])
        for queue, value in zip(QUEUES, depths, strict=True):
            depth.add_metric([queue], value)
        yield depth


def metrics_view(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GitopsCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4")
