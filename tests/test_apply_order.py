"""Per-cluster order in this process (file applyer, real Redis leases, real Git server):
one task drains its cluster oldest first, a task that finds the lease held leaves its
deployment to the holder, and nothing is left behind when the holder lets go. With
worker processes and the kube-apiserver: test_apply_clusters_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker import tasks
from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.file import FileApplyer
from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline import chain, deploying, handoff, lifecycle
from syncworker.pipeline.deploying import ApplyResult, apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.lease import Lease
from syncworker.pipeline.polling import poll_repository
from tests.support.gitserver import WorkingCopy

pytestmark = pytest.mark.django_db
Status = Deployment.Status
NAMES = ("web", "api", "db")


def configmap(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster.objects.create(
        name="local",
        applyer=Cluster.Applyer.FILE,
        settings={"directory": str(tmp_path / "out")},
        is_default=True,
    )


@pytest.fixture
def rendered(git_repo: WorkingCopy, cluster: Cluster) -> list[int]:
    """Three services' deployments, rendered and queued, in id order."""
    git_repo.commit({f"apps/{name}/cm.yaml": configmap(name) for name in NAMES})
    repo = Repository.objects.create(key="mono", provider="git", url=git_repo.url)
    for name in NAMES:
        Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"apps/{name}")
    ids = sorted(poll_repository(repo.pk).deployments)
    for pk in ids:
        assert fetch_and_render(pk).rendered
    return ids


def rows(ids: list[int]) -> list[Deployment]:
    return list(Deployment.objects.filter(pk__in=ids).order_by("pk"))


def test_one_task_applies_every_ready_deployment_of_its_cluster_oldest_first(
    rendered: list[int],
) -> None:
    result = apply_deployment(rendered[-1])

    assert result.status == Status.SUCCEEDED
    done = rows(rendered)
    assert [d.status for d in done] == [Status.SUCCEEDED] * 3
    started = [d.started_at for d in done]
    assert started == sorted(started), "applied in id order"  # type: ignore[type-var]
    assert [apply_deployment(pk).skipped for pk in rendered] == ["already finished"] * 3


def test_another_clusters_deployment_is_not_drained(rendered: list[int], tmp_path: Path) -> None:
    other = Cluster.objects.create(
        name="other", applyer=Cluster.Applyer.FILE, settings={"directory": str(tmp_path / "o")}
    )
    Deployment.objects.filter(pk=rendered[1]).update(cluster=other)

    apply_deployment(rendered[0])

    assert [d.status for d in rows(rendered)] == [Status.SUCCEEDED, Status.QUEUED, Status.SUCCEEDED]


def test_a_deployment_ready_while_the_holder_lets_go_is_applied_by_the_holder(
    rendered: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the holder found nothing more, a deployment became ready and its task
    found the lease still held, then the holder let go."""
    late = rendered[-1]
    Deployment.objects.filter(pk=late).update(bundle_digest="")  # not rendered yet
    release = Lease.release
    answers: list[ApplyResult] = []

    def render_then_release(lease: Lease) -> None:
        if not answers:
            Deployment.objects.filter(pk=late).update(bundle_digest="x")
            answers.append(apply_deployment(late))  # the late task: the lease is held
        release(lease)

    monkeypatch.setattr(Lease, "release", render_then_release)
    apply_deployment(rendered[0])

    assert "busy" in answers[0].skipped
    assert [d.status for d in rows(rendered)] == [Status.SUCCEEDED] * 3


def test_a_transient_error_stops_the_drain_so_nothing_behind_it_passes(
    rendered: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_bundle = FileApplyer.apply_bundle

    def throttled(applyer: FileApplyer, bundle: str, **hints: Any) -> Any:
        if "name: api" in bundle:
            raise TransientApplyError("429 Too Many Requests", retry_after=3)
        return apply_bundle(applyer, bundle, **hints)

    monkeypatch.setattr(FileApplyer, "apply_bundle", throttled)
    web, api, db = rendered

    result = apply_deployment(web)

    assert (result.deployment_id, result.transient, result.retry_after) == (api, True, 3)
    assert [d.status for d in rows(rendered)] == [Status.SUCCEEDED, Status.QUEUED, Status.QUEUED]
    assert Deployment.objects.get(pk=db).started_at is None
    assert "busy" not in apply_deployment(db).skipped, "the lease was let go"


def test_a_deployment_read_ahead_that_moved_on_before_its_turn_is_not_applied(
    rendered: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drain reads the next deployments at once; one superseded while an earlier one
    applies is left as it is, and the drain goes on past it."""
    apply_bundle = FileApplyer.apply_bundle
    web, api, _ = rendered

    def and_meanwhile(applyer: FileApplyer, bundle: str, **hints: Any) -> Any:
        if "name: web" in bundle:
            lifecycle.supersede(api)
        return apply_bundle(applyer, bundle, **hints)

    monkeypatch.setattr(FileApplyer, "apply_bundle", and_meanwhile)
    monkeypatch.setattr(deploying, "READ_AHEAD", 3)

    apply_deployment(web)

    done = rows(rendered)
    assert [d.status for d in done] == [Status.SUCCEEDED, Status.SUPERSEDED, Status.SUCCEEDED]
    assert done[1].started_at is None, "never started"


def test_a_drain_out_of_time_hands_the_cluster_on(
    rendered: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(deploying, "drain_seconds", lambda: 0.0)
    monkeypatch.setattr(handoff, "apply", sent.append)

    result = apply_deployment(rendered[1])

    assert sent == [rendered[0]], "the oldest ready one gets the next task"
    assert "handed on" in result.skipped and result.status == ""
    assert {d.status for d in rows(rendered)} == {Status.QUEUED}


def test_a_retry_goes_to_the_deployment_the_drain_stopped_at_and_gives_up_in_turn(
    rendered: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    own, stuck, behind = rendered[2], rendered[0], rendered[1]
    calls: list[int] = []
    sent: list[int] = []

    def stopped_at_stuck(deployment_id: int) -> ApplyResult:
        calls.append(deployment_id)
        return ApplyResult(stuck, transient=True, error="connection refused")

    monkeypatch.setattr(chain, "apply", stopped_at_stuck)
    monkeypatch.setattr(tasks, "backoff", lambda retries, hint=None: 0.0)
    monkeypatch.setattr(handoff, "apply", sent.append)

    tasks.apply_deployment.apply(args=(own,))

    assert calls == [own] + [stuck] * tasks.MAX_RETRIES
    row = Deployment.objects.get(pk=stuck)
    assert (row.status, row.reason) == (Status.FAILED, "retries")
    assert sent == [behind], "the cluster drains on behind the one that gave up"
