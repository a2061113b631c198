from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service

pytestmark = pytest.mark.django_db


def make_service(name: str = "web") -> Service:
    repo, _ = Repository.objects.get_or_create(
        key="apps", defaults={"provider": "git", "url": "http://127.0.0.1/apps.git"}
    )
    return Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"deploy/{name}")


def test_repository_text_never_contains_its_credentials() -> None:
    repo = Repository.objects.create(
        key="nokube",
        provider="github",
        owner="AI-Infra-Team",
        name="nokube",
        url="https://github.com/AI-Infra-Team/nokube",
        token="ghp_supersecret",
        webhook_secret="hook-secret",
    )
    for text in (str(repo), repr(repo)):
        assert "ghp_supersecret" not in text
        assert "hook-secret" not in text
    assert repo.full_name == "AI-Infra-Team/nokube"


def test_backoff_doubles_the_poll_interval_with_each_failure_up_to_an_hour() -> None:
    repo = Repository(key="r", provider="git", url="file:///r.git", poll_interval=60)
    delays = []
    for failures in (0, 1, 2, 3, 6, 7, 10, 10_000):
        repo.consecutive_failures = failures
        delays.append(repo.backoff().total_seconds())

    # 60 * 2**5 = 1920 is under the hour; 60 * 2**6 = 3840 is not.
    assert delays == [0, 60, 120, 240, 1920, 3600, 3600, 3600]
    repo.poll_interval, repo.consecutive_failures = 1, 12
    assert repo.backoff() == timedelta(seconds=2048)
    repo.poll_interval = 600
    assert repo.backoff() == timedelta(seconds=3600)


def test_only_one_cluster_can_be_the_default() -> None:
    Cluster.objects.create(name="a", is_default=True)
    Cluster.objects.create(name="b", is_default=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        Cluster.objects.create(name="c", is_default=True)


def test_a_deployment_knows_its_duration_and_whether_it_is_final() -> None:
    service = make_service()
    start = timezone.now()
    deployment = Deployment.objects.create(service=service, commit_sha="a" * 40)
    assert deployment.status == Deployment.Status.QUEUED
    assert not deployment.is_final
    assert deployment.duration is None
    deployment.started_at = start
    deployment.finished_at = start + timedelta(seconds=2.5)
    deployment.status = Deployment.Status.SUCCEEDED
    assert deployment.is_final
    assert deployment.duration == timedelta(seconds=2.5)


def test_history_lists_newest_deployment_first() -> None:
    service = make_service()
    first = Deployment.objects.create(service=service, commit_sha="1" * 40)
    second = Deployment.objects.create(service=service, commit_sha="2" * 40)
    assert list(service.deployments.all()) == [second, first]


def test_an_object_on_a_cluster_belongs_to_one_service_only() -> None:
    cluster = Cluster.objects.create(name="prod")
    web, api = make_service("web"), make_service("api")
    fields = {"cluster": cluster, "api_version": "v1", "kind": "ConfigMap", "name": "shared"}
    AppliedObject.objects.create(service=web, namespace="default", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        AppliedObject.objects.create(service=api, namespace="default", **fields)
    # The same name in another namespace is another object.
    AppliedObject.objects.create(service=api, namespace="other", **fields)


def test_a_repository_with_services_cannot_be_deleted_by_accident() -> None:
    from django.db.models import ProtectedError

    service = make_service()
    with pytest.raises(ProtectedError):
        service.repository.delete()


def test_the_migrations_hold_every_change_of_the_models() -> None:
    """A model change without its migration would reach a database without it (a column
    missing in production): makemigrations --check exits non-zero on one."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
