"""Polling a repository through the GitHub REST source (the local GitHub stand-in)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from tests.support.source_fixtures import GitHubRepo

pytestmark = pytest.mark.django_db


@pytest.fixture
def repo(github_repo: GitHubRepo, tmp_path: Path) -> Repository:
    Cluster.objects.create(
        name="local", applyer="file", is_default=True, settings={"directory": str(tmp_path)}
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
    github_repo.copy.commit(
        {
            "svc/web/cm.yaml": yaml.safe_dump(cm),
            "svc/api/x.yaml": yaml.safe_dump({**cm, "metadata": {"name": "api"}}),
        }
    )
    repo = Repository.objects.create(
        key="gh",
        provider=Repository.Provider.GITHUB,
        owner=github_repo.owner,
        name=github_repo.name,
        url=f"https://github.com/{github_repo.owner}/{github_repo.name}",
        api_url=github_repo.github.api_url,
    )
    for name in ("web", "api"):
        Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"svc/{name}")
    return repo


def test_an_unchanged_repository_costs_one_request_answered_304(
    repo: Repository, github_repo: GitHubRepo
) -> None:
    for pk in poll_repository(repo.pk).deployments:
        fetch_and_render(pk)
        assert apply_deployment(pk).status == Deployment.Status.SUCCEEDED
    github_repo.github.reset_counters()

    for _ in range(3):
        assert poll_repository(repo.pk).deployments == []

    assert [r.status for r in github_repo.github.requests] == [304, 304, 304]


def test_a_rate_limited_answer_backs_off_until_its_reset(
    repo: Repository, github_repo: GitHubRepo
) -> None:
    github_repo.github.rate_limited = True
    github_repo.github.rate_limit_reset_in = 900

    result = poll_repository(repo.pk)

    assert result.transient and result.retry_after
    repo.refresh_from_db()
    assert repo.consecutive_failures == 1
    wait = repo.next_poll_after - timezone.now()  # type: ignore[operator]
    # One failure alone would back off one poll interval (60 s); the reset is 15 min away.
    assert timedelta(seconds=850) < wait <= timedelta(seconds=901)
    github_repo.github.reset_counters()
    assert poll_repository(repo.pk).skipped == "backing off after failures"
    assert github_repo.github.requests == []
