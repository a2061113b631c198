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

QUEUES = ("poll", "fetch", "apply", "health", "drift", "default")


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
        # Counts per state rather than a series per service: bounded for 1,000 services.
        for field, choices, help_text in (
            ("health", Service.Health.values, "Services by current health"),
            ("sync_status", Service.SyncStatus.values, "Services by sync status"),
        ):
            family = GaugeMetricFamily(f"gitops_services_{field}", help_text, labels=[field])
            per = dict(Service.objects.values_list(field).annotate(n=Count("id")).order_by())
            for state in choices:
                family.add_metric([state], per.get(state, 0))
            yield family
        drifted = GaugeMetricFamily(
            "gitops_drifted_objects", "Objects found drifted at the services' last drift checks"
        )
        drift_lists = Service.objects.exclude(drift=[]).values_list("drift", flat=True)
        drifted.add_metric([], sum(len(d) for d in drift_lists if isinstance(d, list)))
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
        yield HistogramMetricFamily(
            "gitops_apply_duration_seconds",
            "Time from the start of an apply to its end",
            buckets=counters.cumulative_buckets(seconds),
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
