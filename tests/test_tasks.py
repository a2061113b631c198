"""The Celery task layer: which failures retry, how long they wait, and how they end.
Tasks run through Celery's own machinery in this process (``Task.apply``), so retries
really go through ``Task.retry``."""

from __future__ import annotations

from typing import Any

import pytest

from syncworker import tasks
from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import chain
from syncworker.pipeline.deploying import ApplyResult
from syncworker.pipeline.fetching import FetchResult
from syncworker.pipeline.polling import PollResult

pytestmark = pytest.mark.django_db


def test_backoff_doubles_from_one_second_with_jitter_and_is_capped() -> None:
    for retries, base in [(0, 1.0), (1, 2.0), (3, 8.0), (12, 300.0)]:
        waits = [tasks.backoff(retries) for _ in range(200)]
        assert base * 0.5 <= min(waits) and max(waits) <= base * 1.5
        assert max(waits) - min(waits) > base * 0.2, "jittered, so workers do not stampede"


def test_the_hosts_own_hint_wins_within_bounds() -> None:
    assert tasks.backoff(0, hint=42) == 42
    assert tasks.backoff(5, hint=0) == 1.0
    assert tasks.backoff(5, hint=7200) == 900.0


@pytest.fixture
def deployment() -> Deployment:
    repo = Repository.objects.create(key="r", provider="git", url="https://git.example/r.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    return Deployment.objects.create(service=service, commit_sha="a" * 40, bundle_digest="d")


def test_a_transient_apply_failure_retries_then_fails_with_reason_retries(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def refused(deployment_id: int) -> ApplyResult:
        calls.append(deployment_id)
        return ApplyResult(deployment_id, transient=True, error="connection refused")

    monkeypatch.setattr(chain, "apply", refused)
    monkeypatch.setattr(tasks, "backoff", lambda retries, hint=None: 0.0)

    tasks.apply_deployment.apply(args=(deployment.pk,))

    assert len(calls) == tasks.MAX_RETRIES + 1
    row = Deployment.objects.get(pk=deployment.pk)
    assert (row.status, row.reason) == ("failed", "retries")
    assert row.error == "gave up after retries: connection refused"


def test_a_permanent_failure_is_not_retried(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def rejected(deployment_id: int) -> ApplyResult:
        calls.append(deployment_id)
        return ApplyResult(deployment_id, status="failed", error="invalid")

    monkeypatch.setattr(chain, "apply", rejected)
    tasks.apply_deployment.apply(args=(deployment.pk,))
    assert calls == [deployment.pk]


@pytest.mark.parametrize(("trigger", "attempts"), [("poll", 1), ("webhook", 4), ("manual", 4)])
def test_only_polls_a_person_or_a_webhook_asked_for_are_retried(
    trigger: str, attempts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def unreachable(repository_id: int, **kwargs: Any) -> PollResult:
        calls.append(kwargs)
        return PollResult(repository_id, error="connection refused", transient=True)

    monkeypatch.setattr(chain, "poll", unreachable)
    monkeypatch.setattr(tasks, "backoff", lambda retries, hint=None: 0.0)

    tasks.poll_repository.apply(args=(1,), kwargs={"trigger": trigger})

    assert len(calls) == attempts
    assert {c["trigger"] for c in calls} == {trigger}


def test_a_fetch_batch_retries_only_its_transient_deployments_then_fails_them(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Deployment.objects.create(service=deployment.service, commit_sha="b" * 40)
    calls: list[list[int]] = []

    def half_unreachable(deployment_ids: list[int]) -> list[FetchResult]:
        calls.append(list(deployment_ids))
        return [
            FetchResult(pk, transient=True, error="503 from the host")
            if pk == other.pk
            else FetchResult(pk, rendered=True)
            for pk in deployment_ids
        ]

    monkeypatch.setattr(chain, "fetch", half_unreachable)
    monkeypatch.setattr(tasks, "backoff", lambda retries, hint=None: 0.0)

    tasks.fetch_services.apply(args=([deployment.pk, other.pk],))

    assert calls[0] == [deployment.pk, other.pk]
    assert calls[1:] == [[other.pk]] * tasks.MAX_RETRIES, "only the transient one again"
    failed = Deployment.objects.get(pk=other.pk)
    assert (failed.status, failed.reason) == ("failed", "retries")
    assert Deployment.objects.get(pk=deployment.pk).status == "queued", "the other one untouched"
