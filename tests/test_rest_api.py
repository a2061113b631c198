"""The REST API: staff-only writes, write-only credentials, filters and actions."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service

pytestmark = pytest.mark.django_db

TOKEN = "ghp_rest_never_shown"
SECRET = "hook-rest-never-shown"


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="infra",
        provider="github",
        owner="acme",
        name="infra",
        url="https://github.com/acme/infra",
        token=TOKEN,
        webhook_secret=SECRET,
    )


@pytest.fixture
def service(repo: Repository) -> Service:
    return Service.objects.create(name="web", repository=repo, k8s_yaml_dir="deploy/web")


@pytest.fixture
def non_staff() -> APIClient:
    user = User.objects.create_user("dev", password="pw-dev-123456")
    client = APIClient()
    client.force_authenticate(user)
    return client


def write_requests(repo: Repository, service: Service) -> list[tuple[str, str, dict[str, Any]]]:
    cluster = Cluster.objects.create(name="c1")
    deployment = Deployment.objects.create(service=service, commit_sha="a" * 40)
    new_repo = {"key": "x", "provider": "git", "url": "https://git.example/x.git"}
    return [
        ("post", "/api/repositories/", new_repo),
        ("patch", f"/api/repositories/{repo.pk}/", {"branch": "dev"}),
        ("delete", f"/api/repositories/{repo.pk}/", {}),
        ("post", f"/api/repositories/{repo.pk}/sync/", {}),
        ("post", "/api/services/", {"name": "n", "repository": repo.pk, "k8s_yaml_dir": "n"}),
        ("patch", f"/api/services/{service.pk}/", {"namespace": "x"}),
        ("post", f"/api/services/{service.pk}/redeploy/", {}),
        ("post", "/api/clusters/", {"name": "c2", "applyer": "file"}),
        ("patch", f"/api/clusters/{cluster.pk}/", {"is_default": True}),
        ("post", f"/api/deployments/{deployment.pk}/rollback/", {}),
    ]


def test_every_write_endpoint_refuses_anonymous_and_non_staff_callers(
    repo: Repository, service: Service, non_staff: APIClient
) -> None:
    anonymous = APIClient()
    for method, url, data in write_requests(repo, service):
        assert getattr(anonymous, method)(url, data, format="json").status_code == 401, url
        assert getattr(non_staff, method)(url, data, format="json").status_code == 403, url
    assert Repository.objects.get(pk=repo.pk).branch == "main"


def test_session_writes_need_a_csrf_token(repo: Repository) -> None:
    User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="ops", password="pw-ops-123456")
    response = client.patch(f"/api/repositories/{repo.pk}/", {"branch": "dev"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_credentials_are_write_only(staff_api: APIClient, repo: Repository) -> None:
    listed = staff_api.get("/api/repositories/")
    detail = staff_api.get(f"/api/repositories/{repo.pk}/")
    for response in (listed, detail):
        text = response.content.decode()
        assert TOKEN not in text and SECRET not in text
    assert detail.json()["has_token"] is True

    staff_api.patch(f"/api/repositories/{repo.pk}/", {"branch": "dev"}, format="json")
    repo.refresh_from_db()
    assert (repo.branch, repo.token, repo.webhook_secret) == ("dev", TOKEN, SECRET)

    staff_api.patch(f"/api/repositories/{repo.pk}/", {"token": "ghp_rotated"}, format="json")
    repo.refresh_from_db()
    assert repo.token == "ghp_rotated"


def test_deployment_history_filters_by_service_status_and_time(
    staff_api: APIClient, service: Service
) -> None:
    other = Service.objects.create(name="api", repository=service.repository, k8s_yaml_dir="a")
    ok = Deployment.objects.create(service=service, commit_sha="1" * 40, status="succeeded")
    Deployment.objects.create(service=service, commit_sha="2" * 40, status="failed")
    Deployment.objects.create(service=other, commit_sha="3" * 40, status="succeeded")

    by_name = staff_api.get("/api/deployments/", {"service": "web", "status": "succeeded"}).json()
    assert [d["id"] for d in by_name["results"]] == [ok.pk]
    assert by_name["results"][0]["service_name"] == "web"
    assert staff_api.get("/api/deployments/", {"service": service.pk}).json()["count"] == 2
    assert (
        staff_api.get("/api/deployments/", {"since": "2999-01-01T00:00:00Z"}).json()["count"] == 0
    )
    bad = staff_api.get("/api/deployments/", {"status": "exploded"})
    assert bad.status_code == 400 and "status" in bad.json()
    assert staff_api.get("/api/deployments/", {"since": "yesterday"}).status_code == 400


def test_rolling_back_queues_the_exact_bundle_of_a_successful_deployment(
    staff_api: APIClient, service: Service
) -> None:
    good = Deployment.objects.create(
        service=service,
        commit_sha="1" * 40,
        status="succeeded",
        bundle="kind: X\n",
        bundle_digest="d" * 64,
        object_count=1,
    )
    failed = Deployment.objects.create(service=service, commit_sha="2" * 40, status="failed")

    response = staff_api.post(f"/api/deployments/{good.pk}/rollback/")

    assert response.status_code == 202
    rollback = Deployment.objects.get(pk=response.json()["id"])
    assert (rollback.trigger, rollback.rollback_of, rollback.bundle, rollback.status) == (
        "rollback",
        good,
        "kind: X\n",
        "queued",
    )
    assert staff_api.post(f"/api/deployments/{failed.pk}/rollback/").status_code == 409


def test_a_service_directory_leaving_the_repository_is_refused(
    staff_api: APIClient, repo: Repository
) -> None:
    response = staff_api.post(
        "/api/services/",
        {"name": "evil", "repository": repo.pk, "k8s_yaml_dir": "../../etc"},
        format="json",
    )
    assert response.status_code == 400
    assert "k8s_yaml_dir" in response.json()


def test_the_openapi_schema_is_served(staff_api: APIClient) -> None:
    response = staff_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/deployments/{id}/rollback/" in paths
    assert "/api/repositories/{id}/sync/" in paths


def test_lists_are_paginated(staff_api: APIClient, service: Service) -> None:
    for i in range(60):
        Deployment.objects.create(service=service, commit_sha=f"{i:040d}")
    page = staff_api.get("/api/deployments/").json()
    assert page["count"] == 60
    assert len(page["results"]) == 50
    assert page["next"]


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ({"since": "2026-13-45T99:99:99"}, "since", "not an ISO 8601 date-time"),
        ({"since": "2026-02-30"}, "since", "not an ISO 8601 date-time"),
        ({"until": "garbage"}, "until", "not an ISO 8601 date-time"),
        ({"until": "9999-12-31T23:59:59-05:00"}, "until", "out of range"),
        ({"service": "²"}, "service", "not a service id or name"),
        ({"service": "web\x00"}, "service", "not a service id or name"),
        ({"status": "nope"}, "status", "one of queued, applying"),
    ],
)
def test_history_filters_refuse_bad_values_naming_the_parameter(
    staff_api: APIClient, service: Service, query: dict[str, str], parameter: str, message: str
) -> None:
    response = staff_api.get("/api/deployments/", query)
    assert response.status_code == 400
    assert message in response.json()[parameter]


def test_a_time_filter_without_an_offset_is_read_as_utc(
    staff_api: APIClient, service: Service
) -> None:
    deployment = Deployment.objects.create(service=service, commit_sha="1" * 40)
    Deployment.objects.filter(pk=deployment.pk).update(
        queued_at=datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django warns when a naive time reaches a query
        before = staff_api.get("/api/deployments/", {"since": "2026-01-01T11:59:00"}).json()
        after = staff_api.get("/api/deployments/", {"since": "2026-01-01T12:01:00"}).json()
    assert (before["count"], after["count"]) == (1, 0)


def test_a_huge_limit_is_capped_instead_of_reaching_the_database(
    staff_api: APIClient, service: Service
) -> None:
    Deployment.objects.create(service=service, commit_sha="1" * 40)
    response = staff_api.get("/api/deployments/", {"limit": "9" * 20})
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_a_cluster_in_use_is_not_deleted_and_the_409_says_why(
    staff_api: APIClient, service: Service
) -> None:
    default = Cluster.objects.create(name="kwok", is_default=True)
    pinned = Cluster.objects.create(name="edge")
    spare = Cluster.objects.create(name="spare")
    other = Service.objects.create(
        name="api", repository=service.repository, k8s_yaml_dir="api", cluster=pinned
    )
    AppliedObject.objects.create(
        service=other, cluster=default, api_version="v1", kind="ConfigMap", name="left"
    )

    as_default = staff_api.delete(f"/api/clusters/{default.pk}/")
    as_own = staff_api.delete(f"/api/clusters/{pinned.pk}/")
    unused = staff_api.delete(f"/api/clusters/{spare.pk}/")

    assert as_default.status_code == 409, as_default.content
    assert as_default.json()["detail"] == (
        "cluster 'kwok' is in use: services deploy to it (web) and it holds 1 applied object; "
        "move or remove its services first"
    )
    assert as_own.status_code == 409 and "(api)" in as_own.json()["detail"]
    assert unused.status_code == 204
    assert set(Cluster.objects.values_list("name", flat=True)) == {"kwok", "edge"}
    assert AppliedObject.objects.filter(cluster=default).count() == 1
