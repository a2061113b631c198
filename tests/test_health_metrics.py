"""Probes and Prometheus metrics."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import metrics
from syncworker.pipeline.redisconn import redis_client

pytestmark = pytest.mark.django_db


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_healthz_and_readyz_answer(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_readyz_fails_when_the_broker_is_unreachable(client: Client, settings: object) -> None:
    from syncworker.pipeline import redisconn

    settings.CELERY_BROKER_URL = "redis://:hunter2@127.0.0.1:9/0"  # type: ignore[attr-defined]
    try:
        response = client.get("/readyz")
    finally:
        redisconn._client.cache_clear()
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error")
    assert "hunter2" not in response.content.decode()


def test_metrics_parse_and_move_with_polls_and_deployments(client: Client) -> None:
    redis_client().delete(
        metrics.POLLS,
        metrics.POLL_FAILURES,
        metrics.DEPLOYMENTS,
        metrics.APPLY_SECONDS,
        metrics.LAST_SUCCESSFUL_SYNC,
    )
    repo = Repository.objects.create(key="m", provider="git", url="file:///m.git")
    service = Service.objects.create(name="s", repository=repo, k8s_yaml_dir="s")
    before = scrape(client)
    assert before[("gitops_deployments", (("status", "succeeded"),))] == 0

    metrics.record_poll("m", ok=True)
    metrics.record_poll("m", ok=False)
    Deployment.objects.create(service=service, commit_sha="1" * 40, status="succeeded")
    metrics.record_deployment("succeeded", reason="", seconds=0.4, repository="m")
    metrics.record_deployment("failed", reason="render", seconds=None, repository="m")
    after = scrape(client)

    assert after[("gitops_polls_total", (("repository", "m"),))] == 2
    assert after[("gitops_poll_failures_total", (("repository", "m"),))] == 1
    assert after[("gitops_deployments", (("status", "succeeded"),))] == 1
    assert (
        after[("gitops_deployments_finished_total", (("reason", ""), ("status", "succeeded")))] == 1
    )
    assert (
        after[("gitops_deployments_finished_total", (("reason", "render"), ("status", "failed")))]
        == 1
    )
    assert after[("gitops_apply_duration_seconds_bucket", (("le", "0.5"),))] == 1
    assert after[("gitops_apply_duration_seconds_bucket", (("le", "0.25"),))] == 0
    assert after[("gitops_apply_duration_seconds_count", ())] == 1
    assert after[("gitops_last_successful_sync_timestamp_seconds", (("repository", "m"),))] > 0
    assert ("gitops_queue_depth", (("queue", "apply"),)) in after


def test_services_are_counted_by_health_and_sync_status_with_their_drifted_objects(
    client: Client,
) -> None:
    repo = Repository.objects.create(key="h", provider="git", url="file:///h.git")
    drift = [{"kind": "ConfigMap", "namespace": "shop", "name": "a", "action": "changed"}]
    Service.objects.create(
        name="a", repository=repo, k8s_yaml_dir="a", health="degraded", sync_status="out-of-sync",
        drift=drift * 2,
    )  # fmt: skip
    Service.objects.create(
        name="b", repository=repo, k8s_yaml_dir="b", health="healthy", sync_status="out-of-sync",
        drift=drift,
    )  # fmt: skip
    Service.objects.create(name="c", repository=repo, k8s_yaml_dir="c", health="healthy")
    samples = scrape(client)
    assert samples[("gitops_services_health", (("health", "healthy"),))] == 2
    assert samples[("gitops_services_health", (("health", "degraded"),))] == 1
    assert samples[("gitops_services_health", (("health", "missing"),))] == 0
    assert samples[("gitops_services_sync_status", (("sync_status", "out-of-sync"),))] == 2
    assert samples[("gitops_services_sync_status", (("sync_status", "unknown"),))] == 1
    assert samples[("gitops_drifted_objects", ())] == 3
