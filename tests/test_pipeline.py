"""The sync pipeline, stage by stage, against a real Git server: poll -> fetch/render ->
apply (file applyer here; the kube-apiserver end to end is in test_pipeline_e2e.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from django_celery_beat.models import PeriodicTask

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from syncworker.pipeline.redisconn import redis_client
from syncworker.sources.git import GitSource
from tests.support.gitserver import GitHttpServer, WorkingCopy

pytestmark = pytest.mark.django_db

Status = Deployment.Status


def configmap(name: str, value: str = "1") -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}}
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster.objects.create(
        name="local",
        applyer=Cluster.Applyer.FILE,
        settings={"directory": str(tmp_path / "out")},
        is_default=True,
    )


@pytest.fixture
def monorepo(git_repo: WorkingCopy, cluster: Cluster) -> Repository:
    git_repo.commit(
        {
            "apps/web/cm.yaml": configmap("web"),
            "apps/api/cm.yaml": configmap("api"),
            "apps/db/cm.yaml": configmap("db"),
            "README.md": "docs",
        }
    )
    repo = Repository.objects.create(
        key="mono", provider=Repository.Provider.GIT, url=git_repo.url, branch="main"
    )
    for name in ("web", "api", "db"):
        Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"apps/{name}")
    return repo


def run_queued(deployment_ids: list[int]) -> list[Deployment]:
    """Do what the fetch and apply workers do, in queue order."""
    for pk in deployment_ids:
        fetch_and_render(pk)
    for pk in deployment_ids:
        apply_deployment(pk)
    return list(Deployment.objects.filter(pk__in=deployment_ids).order_by("pk"))


def test_first_poll_deploys_every_service_at_the_head(
    monorepo: Repository, git_repo: WorkingCopy, tmp_path: Path
) -> None:
    result = poll_repository(monorepo.pk)

    deployments = run_queued(result.deployments)
    assert sorted(d.service.name for d in deployments) == ["api", "db", "web"]
    assert {d.status for d in deployments} == {Status.SUCCEEDED}
    head = git_repo._git("rev-parse", "HEAD")
    assert {d.commit_sha for d in deployments} == {head}
    written = yaml.safe_load((tmp_path / "out" / "web.yaml").read_text())
    assert written["metadata"]["name"] == "web"
    assert written["metadata"]["labels"]["simple-gitops.io/service"] == "web"
    monorepo.refresh_from_db()
    assert monorepo.last_seen_commit == head
    assert monorepo.last_polled_at is not None


def test_a_no_change_poll_makes_one_request_and_queues_nothing(
    monorepo: Repository, git_server: GitHttpServer
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    git_server.reset_counters()

    result = poll_repository(monorepo.pk)

    assert result.deployments == []
    assert len(git_server.requests) == 1
    assert git_server.requests[0].bytes_out <= 2048


def test_a_commit_touching_one_service_redeploys_only_that_service(
    monorepo: Repository, git_repo: WorkingCopy
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    new_head = git_repo.commit({"apps/api/cm.yaml": configmap("api", "2"), "README.md": "more"})

    result = poll_repository(monorepo.pk)

    deployments = run_queued(result.deployments)
    assert [(d.service.name, d.commit_sha, d.status) for d in deployments] == [
        ("api", new_head, Status.SUCCEEDED)
    ]


def test_a_bad_bundle_fails_naming_the_file_and_applies_nothing(
    monorepo: Repository, git_repo: WorkingCopy, tmp_path: Path
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    before = (tmp_path / "out" / "web.yaml").read_text()
    git_repo.commit(
        {
            "apps/web/cm.yaml": configmap("web", "2"),
            "apps/web/broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            "apps/api/cm.yaml": configmap("api", "2"),
        }
    )

    deployments = run_queued(poll_repository(monorepo.pk).deployments)

    by_name = {d.service.name: d for d in deployments}
    assert by_name["web"].status == Status.FAILED
    assert "apps/web/broken.yaml" in by_name["web"].error
    assert "metadata.name" in by_name["web"].error
    assert (tmp_path / "out" / "web.yaml").read_text() == before
    assert by_name["api"].status == Status.SUCCEEDED


def test_a_queued_deployment_overtaken_by_a_newer_one_is_superseded(
    monorepo: Repository, git_repo: WorkingCopy
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    git_repo.commit({"apps/web/cm.yaml": configmap("web", "2")})
    older = poll_repository(monorepo.pk).deployments
    git_repo.commit({"apps/web/cm.yaml": configmap("web", "3")})
    newer = poll_repository(monorepo.pk).deployments

    first, second = run_queued(older + newer)

    assert first.status == Status.SUPERSEDED
    assert first.started_at is None
    assert second.status == Status.SUCCEEDED


def test_a_redelivered_apply_does_not_apply_twice(monorepo: Repository) -> None:
    (deployment,) = run_queued(poll_repository(monorepo.pk).deployments[:1])
    finished_at = deployment.finished_at

    again = apply_deployment(deployment.pk)

    assert again.skipped == "already finished"
    deployment.refresh_from_db()
    assert deployment.finished_at == finished_at


def test_a_deployment_left_applying_by_a_crashed_worker_is_applied_again(
    monorepo: Repository, tmp_path: Path
) -> None:
    (pk,) = poll_repository(monorepo.pk).deployments[:1]
    fetch_and_render(pk)
    Deployment.objects.filter(pk=pk).update(status=Status.APPLYING)

    assert apply_deployment(pk).status == Status.SUCCEEDED
    name = Deployment.objects.get(pk=pk).service.name
    assert (tmp_path / "out" / f"{name}.yaml").exists()


def test_an_apply_that_finds_its_cluster_held_returns_at_once_and_is_not_retried(
    monorepo: Repository, cluster: Cluster
) -> None:
    (pk,) = poll_repository(monorepo.pk).deployments[:1]
    fetch_and_render(pk)
    lock = redis_client().lock(f"gitops:apply-lock:{cluster.pk}", timeout=30)
    assert lock.acquire()
    try:
        started = time.monotonic()
        result = apply_deployment(pk)
        waited = time.monotonic() - started
    finally:
        lock.release()

    assert "busy" in result.skipped and not result.transient, "the holder applies it in turn"
    assert waited < 1.0, f"held a worker slot for {waited:.1f}s"
    assert Deployment.objects.get(pk=pk).status == Status.QUEUED
    assert apply_deployment(pk).status == Status.SUCCEEDED


def test_inventory_records_applied_objects_per_service(monorepo: Repository) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    rows = AppliedObject.objects.filter(service__name="web").values_list("kind", "name")
    assert list(rows) == [("ConfigMap", "web")]


def test_an_unreachable_repository_records_the_error_and_backs_off(cluster: Cluster) -> None:
    repo = Repository.objects.create(
        key="gone", provider=Repository.Provider.GIT, url="http://127.0.0.1:9/nothing.git"
    )
    Service.objects.create(name="x", repository=repo, k8s_yaml_dir="x")

    result = poll_repository(repo.pk)

    assert result.error and result.transient
    repo.refresh_from_db()
    assert repo.consecutive_failures == 1
    assert repo.last_error
    assert repo.next_poll_after is not None
    assert poll_repository(repo.pk).skipped == "backing off after failures"


def test_a_disabled_repository_is_not_polled(monorepo: Repository) -> None:
    Repository.objects.filter(pk=monorepo.pk).update(enabled=False)
    assert poll_repository(monorepo.pk).skipped == "repository disabled"


def test_each_repository_has_a_beat_schedule_in_step_with_it(cluster: Cluster) -> None:
    repo = Repository.objects.create(
        key="sched", provider=Repository.Provider.GIT, url="file:///x.git", poll_interval=45
    )
    task = PeriodicTask.objects.get(name=f"gitops-poll:{repo.pk}")
    assert (task.task, task.interval.every, task.enabled, task.queue) == (
        "syncworker.poll_repository",
        45,
        True,
        "poll",
    )

    repo.poll_interval = 90
    repo.enabled = False
    repo.save()
    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (90, False)

    pk = repo.pk
    repo.delete()
    assert not PeriodicTask.objects.filter(name=f"gitops-poll:{pk}").exists()


def test_the_sweep_resends_what_a_dead_worker_or_a_lost_broker_left_behind(
    monorepo: Repository, cluster: Cluster
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from syncworker.pipeline.deploying import lease_key
    from syncworker.pipeline.recovery import EPOCH_KEY, requeue_stuck

    web, api, db = poll_repository(monorepo.pk).deployments
    fetch_and_render(api)
    fetch_and_render(db)
    redis_client().delete(EPOCH_KEY, lease_key(cluster.pk))

    assert requeue_stuck() == [web, api, db], "the broker lost its data: everything again"
    assert requeue_stuck() == [], "nothing waits long enough yet"

    Deployment.objects.filter(pk=db).update(status=Status.APPLYING, cluster=cluster)
    redis_client().set(lease_key(cluster.pk), "held", ex=30)
    assert requeue_stuck() == [], "a live apply holds its cluster's lease"
    redis_client().delete(lease_key(cluster.pk))
    assert requeue_stuck() == [db], "applying without a lease: its worker died"

    minutes_ago = timezone.now() - timedelta(minutes=2)
    Deployment.objects.filter(pk=db).update(status=Status.QUEUED)
    Deployment.objects.filter(pk__in=[api, db]).update(queued_at=minutes_ago)
    assert requeue_stuck() == [api], "the oldest rendered one of a free cluster"
    Deployment.objects.filter(pk=web).update(queued_at=timezone.now() - timedelta(hours=1))
    try:
        redis_client().lpush("fetch", "a message still waiting")
        assert requeue_stuck() == [api], "a fetch backlog is a queue, not a lost message"
    finally:
        redis_client().delete("fetch")
    assert requeue_stuck() == [web, api], "and a fetch that waited past the time limit"
    assert requeue_stuck(older_than=timedelta(days=1)) == [api]


def test_resent_tasks_are_harmless_after_the_first_one_ran(monorepo: Repository) -> None:
    web, *_ = poll_repository(monorepo.pk).deployments
    fetch_and_render(web)
    assert fetch_and_render(web).skipped, "a second fetch stores nothing"
    assert apply_deployment(web).status == Status.SUCCEEDED
    assert apply_deployment(web).skipped == "already finished"


def test_migrate_schedules_the_stuck_deployment_sweep() -> None:
    assert PeriodicTask.objects.get(name="gitops-requeue-stuck").task == "syncworker.requeue_stuck"


def test_a_tree_already_queued_is_not_queued_again_even_if_the_head_looks_new(
    monorepo: Repository,
) -> None:
    first = poll_repository(monorepo.pk).deployments
    # A second poll that believes the head moved (its state was lost) finds every tree
    # already queued, before any of them was even rendered.
    Repository.objects.filter(pk=monorepo.pk).update(last_seen_commit="", etag="")

    assert poll_repository(monorepo.pk).deployments == []
    assert Deployment.objects.count() == len(first) == 3


def test_a_build_finishing_while_a_poll_reads_the_tree_does_not_deploy_its_service_again(
    monorepo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A webhook's deployments are queued; beat's poll reads the directories' ids; the
    # fetches finish right then, recording that their builds also read the root
    # .gitopsignore, which that poll did not ask about.
    first = poll_repository(monorepo.pk).deployments
    Repository.objects.filter(pk=monorepo.pk).update(last_seen_commit="", etag="")
    read_ids = GitSource.tree_ids
    asked: list[list[str]] = []

    def ids_then_the_fetches_finish(
        self: GitSource, commit: str, paths: list[str]
    ) -> dict[str, str | None]:
        asked.append(sorted(paths))
        found = read_ids(self, commit, paths)
        if len(asked) == 1:
            for pk in first:
                fetch_and_render(pk)
        return found

    monkeypatch.setattr(GitSource, "tree_ids", ids_then_the_fetches_finish)

    assert poll_repository(monorepo.pk).deployments == []
    assert Deployment.objects.count() == 3
    assert asked[0] == ["apps/api", "apps/db", "apps/web"]
    assert asked[-1] == [".gitopsignore"]  # the paths the builds added, read once more


def test_a_service_whose_directory_leaves_the_repository_fails_alone(
    monorepo: Repository,
) -> None:
    # A row from before the rules (the doors refuse this value now): it must not stop
    # its siblings from deploying.
    bad = Service.objects.create(name="evil", repository=monorepo, k8s_yaml_dir="../etc")

    result = poll_repository(monorepo.pk)

    assert result.error == ""
    assert sorted(d.service.name for d in run_queued(result.deployments)) == ["api", "db", "web"]
    failed = Deployment.objects.get(service=bad)
    assert (failed.status, failed.reason) == (Status.FAILED, Deployment.Reason.SOURCE)
    assert "k8s_yaml_dir '../etc' must stay inside the repository" in failed.error
    Repository.objects.filter(pk=monorepo.pk).update(last_seen_commit="", etag="")
    assert poll_repository(monorepo.pk).failed == [], "reported once, not on every poll"


def test_a_service_directory_removed_from_git_fails_once_and_prunes_nothing(
    monorepo: Repository, git_repo: WorkingCopy
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    git_repo.commit({"apps/db/cm.yaml": None})

    result = poll_repository(monorepo.pk)

    assert result.deployments == []
    missing = Deployment.objects.get(pk__in=result.failed)
    assert (missing.service.name, missing.status, missing.reason) == ("db", "failed", "source")
    assert missing.error == f"apps/db does not exist at {missing.commit_sha[:12]}"
    assert AppliedObject.objects.filter(service__name="db").count() == 1, "nothing pruned"
    git_repo.commit({"README.md": "again"})
    assert poll_repository(monorepo.pk).failed == []

    git_repo.commit({"apps/db/cm.yaml": configmap("db", "back")})
    back = run_queued(poll_repository(monorepo.pk).deployments)
    assert [(d.service.name, d.status) for d in back] == [("db", "succeeded")]


def test_a_transient_failure_is_retried_with_doubling_backoff_until_it_succeeds(
    monorepo: Repository,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from syncworker.pipeline import lifecycle

    run_queued(poll_repository(monorepo.pk).deployments)
    web = Service.objects.get(name="web")
    Repository.objects.filter(pk=monorepo.pk).update(poll_interval=60)
    tree = web.deployments.get().tree_sha

    def fail_transiently(ago: timedelta) -> None:
        (pk,) = poll_repository(monorepo.pk, force=True, service_ids=[web.pk]).deployments
        assert lifecycle.fail(pk, Deployment.Reason.RETRIES, "gave up after retries: refused")
        Deployment.objects.filter(pk=pk).update(finished_at=timezone.now() - ago)

    fail_transiently(ago=timedelta(seconds=30))
    assert poll_repository(monorepo.pk).deployments == [], "within the first 60 s backoff"

    Deployment.objects.filter(service=web).update(
        finished_at=timezone.now() - timedelta(seconds=61)
    )
    (retry,) = poll_repository(monorepo.pk).deployments
    assert Deployment.objects.get(pk=retry).tree_sha == tree
    assert lifecycle.fail(retry, Deployment.Reason.RETRIES, "gave up after retries: refused")
    Deployment.objects.filter(pk=retry).update(finished_at=timezone.now() - timedelta(seconds=90))
    assert poll_repository(monorepo.pk).deployments == [], "two in a row: 120 s now"

    Deployment.objects.filter(pk=retry).update(finished_at=timezone.now() - timedelta(seconds=121))
    (again,) = poll_repository(monorepo.pk).deployments
    assert [d.status for d in run_queued([again])] == [Status.SUCCEEDED]
    assert poll_repository(monorepo.pk).deployments == [], "succeeded: nothing more to retry"


def test_a_permanent_failure_is_not_retried_until_something_changes(
    monorepo: Repository, git_repo: WorkingCopy
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    git_repo.commit({"apps/web/cm.yaml": "kind: [broken\n"})
    (broken,) = run_queued(poll_repository(monorepo.pk).deployments)
    assert (broken.status, broken.reason) == (Status.FAILED, Deployment.Reason.RENDER)

    Repository.objects.filter(pk=monorepo.pk).update(last_seen_commit="", etag="")
    assert poll_repository(monorepo.pk).deployments == []


def test_a_bundle_outside_the_repositorys_namespaces_and_kinds_fails_naming_them(
    monorepo: Repository, git_repo: WorkingCopy
) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    git_repo.commit(
        {
            "apps/web/cm.yaml": yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "web", "namespace": "billing"},
                }
            ),
            "apps/web/role.yaml": yaml.safe_dump({**role, "metadata": {"name": "root"}}),
            "apps/api/cm.yaml": yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "api", "namespace": "shop-eu"},
                }
            ),
        }
    )
    Repository.objects.filter(pk=monorepo.pk).update(
        allowed_namespaces=["shop-*"], allowed_cluster_resources=[]
    )

    by_name = {d.service.name: d for d in run_queued(poll_repository(monorepo.pk).deployments)}

    web = by_name["web"]
    assert (web.status, web.reason) == (Status.FAILED, Deployment.Reason.POLICY)
    assert (
        "ConfigMap billing/web: namespace 'billing' is not allowed (allowed: shop-*)" in web.error
    )
    assert "ClusterRole root: cluster-scoped ClusterRole is not allowed (allowed kinds: none)" in (
        web.error
    )
    assert web.bundle_digest == "", "refused before anything was stored for the apply"
    assert by_name["api"].status == Status.SUCCEEDED
    assert by_name["db"].status == Status.FAILED, "db lands in 'default', not shop-*"

    Repository.objects.filter(pk=monorepo.pk).update(
        allowed_namespaces=None, allowed_cluster_resources=["rbac.authorization.k8s.io/ClusterRole"]
    )
    again = run_queued(
        poll_repository(monorepo.pk, force=True, service_ids=[web.service_id]).deployments
    )
    assert [d.status for d in again] == [Status.SUCCEEDED]


def test_a_change_of_a_services_namespace_deploys_it_again_at_the_same_commit(
    monorepo: Repository, tmp_path: Path
) -> None:
    (first, *_) = run_queued(poll_repository(monorepo.pk).deployments)
    Service.objects.filter(name="web").update(namespace="shop")

    deployments = run_queued(poll_repository(monorepo.pk).deployments)

    assert [(d.service.name, d.commit_sha, d.status) for d in deployments] == [
        ("web", first.commit_sha, Status.SUCCEEDED)
    ]
    written = list(yaml.safe_load_all((tmp_path / "out" / "web.yaml").read_text()))
    assert {(o["kind"], o["metadata"].get("namespace")) for o in written} >= {("ConfigMap", "shop")}
    assert poll_repository(monorepo.pk).deployments == [], "deployed with these settings"


def test_a_deployment_that_failed_is_retried_when_a_setting_fixes_it(
    monorepo: Repository,
) -> None:
    Service.objects.filter(name="web").update(include=["*.yml"])  # matches nothing
    (broken,) = [
        d for d in run_queued(poll_repository(monorepo.pk).deployments) if d.status != "succeeded"
    ]
    assert (broken.service.name, broken.reason) == ("web", Deployment.Reason.RENDER)
    assert poll_repository(monorepo.pk).deployments == [], "not retried as it is"

    Service.objects.filter(name="web").update(include=["*.yaml"])

    (fixed,) = run_queued(poll_repository(monorepo.pk).deployments)
    assert (fixed.service.name, fixed.commit_sha, fixed.status) == (
        "web",
        broken.commit_sha,
        Status.SUCCEEDED,
    )


def test_settings_that_do_not_change_what_is_applied_deploy_nothing(
    monorepo: Repository,
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    Service.objects.filter(name="web").update(
        wait=False, health_timeout=30, drift_interval=60, self_heal=True
    )
    Repository.objects.filter(pk=monorepo.pk).update(poll_interval=5)
    Service.objects.filter(name="api").update(enabled=False)
    Service.objects.filter(name="api").update(enabled=True)

    assert poll_repository(monorepo.pk).deployments == []


def test_deployments_stored_before_settings_digests_do_not_redeploy_everything(
    monorepo: Repository,
) -> None:
    run_queued(poll_repository(monorepo.pk).deployments)
    Deployment.objects.update(settings_digest="")

    assert poll_repository(monorepo.pk).deployments == []
