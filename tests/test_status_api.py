"""``GET /v1/gitops/repos`` answers exactly the seed's schema."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from syncworker.models import Deployment, Repository, Service

pytestmark = pytest.mark.django_db

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


def test_status_shows_the_newest_successful_deployment(client: Client) -> None:
    repo = seed_repository()
    service = repo.services.get(name="nokube-etcd")
    finished = datetime(2025, 9, 1, 11, 45, 2, 123456, tzinfo=timezone.utc)
    Deployment.objects.create(
        service=service,
        commit_sha="a1b2c3d4e5f6" + "0" * 28,
        status="succeeded",
        finished_at=finished,
    )
    Deployment.objects.create(
        service=service,
        commit_sha="f" * 40,
        status="failed",
        finished_at=datetime(2025, 9, 2, tzinfo=timezone.utc),
    )

    (entry,) = client.get("/v1/gitops/repos").json()["repos"]

    assert entry["last_deploy_time"] == "2025-09-01T11:45:02Z"
    assert entry["last_commit_id"] == "a1b2c3d4e5f6" + "0" * 28


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
