"""``GET /v1/gitops/repos`` answers exactly the seed's schema."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from syncworker.selectors import iso_utc
from tests.support.gitserver import WorkingCopy

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_answers(settings: Any) -> None:
    settings.GITOPS = {**settings.GITOPS, "STATUS_CACHE_SECONDS": 0}


ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
REPO_FIELDS = {
    "repo",
    "url",
    "branch",
    "last_deploy_time",
    "last_commit_id",
    "services",
    "service_count",
}


def seed_repository(key: str = "nokube") -> Repository:
    repo = Repository.objects.create(
        key=key,
        provider="github",
        owner="AI-Infra-Team",
        name=key,
        url=f"https://github.com/AI-Infra-Team/{key}",
        token="ghp_never_shown",
        webhook_secret="never-shown-either",
    )
    for name in ("etcd", "monitoring"):
        Service.objects.create(name=f"{key}-{name}", repository=repo, k8s_yaml_dir=f"ex/{name}")
    return repo


def test_status_matches_the_seed_schema_before_any_deployment(client: Client) -> None:
    seed_repository()

    body = client.get("/v1/gitops/repos").json()

    assert set(body) == {"count", "repos", "timestamp"}
    assert body["count"] == 1
    assert ISO_Z.match(body["timestamp"])
    (repo,) = body["repos"]
    assert set(repo) == REPO_FIELDS
    assert repo == {
        "repo": "AI-Infra-Team/nokube",
        "url": "https://github.com/AI-Infra-Team/nokube",
        "branch": "main",
        "last_deploy_time": "",
        "last_commit_id": "",
        "services": ["nokube-etcd", "nokube-monitoring"],
        "service_count": 2,
    }


def test_status_after_a_deployment_shows_its_commit_and_time(
    client: Client, git_repo: WorkingCopy, tmp_path: Path
) -> None:
    Cluster.objects.create(
        name="local", applyer="file", is_default=True, settings={"directory": str(tmp_path)}
    )
    head = git_repo.commit(
        {"ex/web/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w}\n"}
    )
    repo = Repository.objects.create(key="local", provider="git", url=git_repo.url)
    Service.objects.create(name="web", repository=repo, k8s_yaml_dir="ex/web")
    Service.objects.create(name="never", repository=repo, k8s_yaml_dir="ex/none")
    before = client.get("/v1/gitops/repos").json()["repos"][0]
    assert (before["last_deploy_time"], before["last_commit_id"]) == ("", "")

    (pk,) = poll_repository(repo.pk).deployments
    fetch_and_render(pk)
    assert apply_deployment(pk).status == Deployment.Status.SUCCEEDED

    after = client.get("/v1/gitops/repos").json()["repos"][0]
    finished = Deployment.objects.get(pk=pk).finished_at
    assert set(after) == REPO_FIELDS
    assert after["last_commit_id"] == head
    assert after["last_deploy_time"] == iso_utc(finished)
    assert ISO_Z.match(after["last_deploy_time"])
    assert after["services"] == ["never", "web"] and after["service_count"] == 2


def test_the_newest_of_several_services_is_the_repositorys_last_deployment(
    client: Client,
) -> None:
    seed_repository()
    older = datetime(2025, 9, 1, 11, 45, 2, 123456, tzinfo=timezone.utc)
    Service.objects.filter(name="nokube-etcd").update(
        last_applied_at=older, last_applied_commit="a1b2c3d4e5f6" + "0" * 28
    )
    Service.objects.filter(name="nokube-monitoring").update(
        last_applied_at=older.replace(day=2), last_applied_commit="f" * 40
    )

    (entry,) = client.get("/v1/gitops/repos").json()["repos"]

    assert entry["last_deploy_time"] == "2025-09-02T11:45:02Z"
    assert entry["last_commit_id"] == "f" * 40


def test_disabled_services_and_repositories_are_not_listed(client: Client) -> None:
    repo = seed_repository()
    Service.objects.filter(name="nokube-etcd").update(enabled=False)
    seed_repository("old").__class__.objects.filter(key="old").update(enabled=False)

    body = client.get("/v1/gitops/repos").json()

    assert body["count"] == 1
    assert body["repos"][0]["repo"] == repo.full_name
    assert body["repos"][0]["services"] == ["nokube-monitoring"]


def test_status_never_contains_credentials(client: Client) -> None:
    seed_repository()
    text = client.get("/v1/gitops/repos").content.decode()
    assert "ghp_never_shown" not in text
    assert "never-shown-either" not in text


@pytest.mark.parametrize("repositories", [1, 100])
def test_query_count_does_not_grow_with_the_number_of_repositories(
    client: Client, repositories: int
) -> None:
    for i in range(repositories):
        seed_repository(f"r{i}")
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/v1/gitops/repos").json()
    assert body["count"] == repositories
    assert len(queries) == 2


def test_the_status_api_can_be_closed_to_anonymous_readers(
    client: Client, admin_client: Client, settings: object
) -> None:
    settings.GITOPS = {**settings.GITOPS, "STATUS_API_PUBLIC": False}  # type: ignore[attr-defined]
    seed_repository()
    assert client.get("/v1/gitops/repos").status_code in (401, 403)
    assert admin_client.get("/v1/gitops/repos").json()["count"] == 1


def test_a_rendered_answer_is_reused_for_a_short_while(client: Client, settings: Any) -> None:
    settings.GITOPS = {**settings.GITOPS, "STATUS_CACHE_SECONDS": 60}
    seed_repository()
    first = client.get("/v1/gitops/repos").content
    seed_repository("other")

    with CaptureQueriesContext(connection) as queries:
        again = client.get("/v1/gitops/repos").content

    assert again == first
    assert len(queries) == 0
