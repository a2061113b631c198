"""Fetches in batches: a poll hands its changed services on ``GITOPS_FETCH_BATCH`` to a
task, a batch renders each service on its own, and a rendered batch hands on one apply
per cluster (its task drains the cluster). Messages are read back from the real Redis
queues the workers consume."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.models import Cluster, Deployment, NotificationTarget, Repository, Service
from syncworker.pipeline import chain, handoff
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render_many
from syncworker.pipeline.polling import poll_repository
from syncworker.pipeline.redisconn import redis_client
from syncworker.sources.git import GitSource
from tests.support.gitserver import WorkingCopy

pytestmark = pytest.mark.django_db

NAMES = ("web", "api", "db", "cache", "queue")


def configmap(name: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": "1"}}
    )


@pytest.fixture
def clusters(tmp_path: Path) -> tuple[Cluster, Cluster]:
    near = Cluster.objects.create(
        name="near",
        applyer=Cluster.Applyer.FILE,
        settings={"directory": str(tmp_path / "near")},
        is_default=True,
    )
    far = Cluster.objects.create(
        name="far", applyer=Cluster.Applyer.FILE, settings={"directory": str(tmp_path / "far")}
    )
    return near, far


@pytest.fixture
def repo(git_repo: WorkingCopy, clusters: tuple[Cluster, Cluster]) -> Repository:
    """Five services in one monorepo (``apps/<name>``); cache and queue go to the far
    cluster, the rest to the default one."""
    git_repo.commit({f"apps/{name}/cm.yaml": configmap(name) for name in NAMES})
    repository = Repository.objects.create(
        key="mono", provider=Repository.Provider.GIT, url=git_repo.url, branch="main"
    )
    for name in NAMES:
        Service.objects.create(
            name=name,
            repository=repository,
            k8s_yaml_dir=f"apps/{name}",
            cluster=clusters[1] if name in ("cache", "queue") else None,
        )
    return repository


@pytest.fixture
def queues() -> Iterator[Any]:
    """The fetch and apply queues, empty before and after; ``read(queue)`` gives each
    message's (task name, args) in the order they were sent."""
    client = redis_client()
    names = [handoff.FETCH, handoff.APPLY, handoff.NOTIFY]
    from django.conf import settings

    keys = [settings.CELERY_TASK_ROUTES[name]["queue"] for name in names]
    client.delete(*keys)

    def read(queue: str) -> list[tuple[str, list[Any]]]:
        messages = [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]
        return [
            (m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages
        ]

    yield read
    client.delete(*keys)


def test_a_poll_hands_its_changed_services_on_in_batches(
    repo: Repository, queues: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GITOPS = {**settings.GITOPS, "FETCH_BATCH": 2}
    with django_capture_on_commit_callbacks(execute=True):
        result = chain.poll(repo.pk, trigger="webhook")

    assert len(result.deployments) == 5
    ids = sorted(result.deployments)
    assert queues("fetch") == [
        (handoff.FETCH, [ids[0:2]]),
        (handoff.FETCH, [ids[2:4]]),
        (handoff.FETCH, [ids[4:5]]),
    ], "five services, two to a task: three messages"


def test_a_rendered_batch_hands_on_one_apply_per_cluster(
    repo: Repository, queues: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ids = sorted(poll_repository(repo.pk).deployments)
    by_name = dict(Deployment.objects.filter(pk__in=ids).values_list("service__name", "pk"))

    with django_capture_on_commit_callbacks(execute=True):
        results = chain.fetch(ids)

    assert all(r.rendered for r in results)
    # The lowest id of each cluster: its task drains the rest of that cluster in order.
    assert queues("apply") == [
        (handoff.APPLY, [min(by_name["web"], by_name["api"], by_name["db"])]),
        (handoff.APPLY, [min(by_name["cache"], by_name["queue"])]),
    ]


def test_each_service_of_a_batch_renders_or_fails_on_its_own(
    repo: Repository, git_repo: WorkingCopy
) -> None:
    git_repo.commit(
        {
            "apps/api/cm.yaml": "kind: [unclosed",
            "apps/db/kustomization.yaml": "resources:\n- https://github.com/org/base//app\n",
        }
    )
    ids = sorted(poll_repository(repo.pk).deployments)
    by_pk = {d.pk: d.service.name for d in Deployment.objects.filter(pk__in=ids)}

    results = {by_pk[r.deployment_id]: r for r in fetch_and_render_many(ids)}

    assert {name for name, r in results.items() if r.rendered} == {"web", "cache", "queue"}
    assert set(results) == set(NAMES)
    rows = {d.service.name: d for d in Deployment.objects.filter(pk__in=ids)}
    assert (rows["api"].status, rows["api"].reason) == ("failed", "render")
    assert "apps/api/cm.yaml" in rows["api"].error, "the broken file is named"
    assert (rows["db"].status, rows["db"].reason) == ("failed", "render")
    assert "apps/db/kustomization.yaml" in rows["db"].error
    assert rows["web"].bundle_digest and rows["web"].status == "queued"


def test_a_batch_asks_its_source_for_every_directory_at_once(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, list[str]]] = []
    original = GitSource.prefetch

    def recorded(self: GitSource, commit: str, directories: list[str]) -> None:
        asked.append((commit, list(directories)))
        original(self, commit, directories)

    monkeypatch.setattr(GitSource, "prefetch", recorded)
    ids = sorted(poll_repository(repo.pk).deployments)
    commit = Deployment.objects.get(pk=ids[0]).commit_sha

    fetch_and_render_many(ids)

    assert asked == [(commit, [f"apps/{name}" for name in NAMES])]


def test_a_batch_member_already_rendered_or_gone_is_left_alone(repo: Repository) -> None:
    ids = sorted(poll_repository(repo.pk).deployments)
    fetch_and_render_many(ids[:1])
    Deployment.objects.filter(pk=ids[1]).delete()

    results = fetch_and_render_many(ids)

    assert [r.deployment_id for r in results] == ids
    assert results[0].skipped.startswith("already rendered")
    assert results[1].skipped == "deployment no longer exists"
    assert all(r.rendered for r in results[2:])


@pytest.mark.parametrize("targets", [0, 1])
def test_a_drain_hands_on_a_notification_only_when_a_target_is_enabled(
    targets: int, repo: Repository, queues: Any, django_capture_on_commit_callbacks: Any
) -> None:
    if targets:
        NotificationTarget.objects.create(url="http://127.0.0.1:9/hook")
    ids = sorted(poll_repository(repo.pk).deployments)
    fetch_and_render_many(ids)

    with django_capture_on_commit_callbacks(execute=True):
        result = apply_deployment(ids[0])  # drains the default cluster: web, api, db

    assert result.status == "succeeded"
    finished = Deployment.objects.filter(pk__in=ids, status="succeeded")
    assert finished.count() == 3
    sent = sorted(args[0] for _, args in queues("default"))
    assert sent == (sorted(finished.values_list("pk", flat=True)) if targets else [])
