"""End to end through real processes: commits pushed to the Git server, poll, fetch and
apply tasks on Celery worker processes over the Redis broker, and the objects read back
from the real kube-apiserver."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from syncworker.kube.labels import CREATE_ONLY_ANNOTATION
from syncworker.models import Cluster, Deployment, NotificationTarget
from syncworker.pipeline.deploying import hand_on, lease_key
from syncworker.pipeline.redisconn import redis_client
from syncworker.pipeline.schedules import ensure_sweep_schedule
from tests.support.beat import beat_process
from tests.support.e2e import CRASH_RECOVERY_ENV, cm, finished, make_repo, many_cms, sync
from tests.support.gitserver import WorkingCopy
from tests.support.receiver import Receiver
from tests.support.workers import WorkerProcess, start_worker

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
Status = Deployment.Status


def test_a_commit_touching_one_service_deploys_only_it_and_prunes_what_left_git(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    git_repo.commit(
        {
            "deploy/app/a.yaml": cm("alpha", ns, "1"),
            "deploy/app/b.yaml": cm("beta", ns, "1"),
            "deploy/other/c.yaml": cm("gamma", ns, "1"),
        }
    )
    repo, (app_service, other) = make_repo(git_repo, "app", "other")
    sync(repo)
    finished(app_service, 1)
    finished(other, 1)
    core.create_namespaced_config_map(
        ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="handmade"), data={"by": "hand"})
    )

    second = git_repo.commit(
        {"deploy/app/a.yaml": cm("alpha", ns, "2"), "deploy/app/b.yaml": None, "README": "x"}
    )
    sync(repo)
    latest = finished(app_service, 2)[-1]

    assert (latest.status, latest.commit_sha) == (Status.SUCCEEDED, second), latest.error
    assert other.deployments.count() == 1
    alpha = core.read_namespaced_config_map("alpha", ns)
    assert alpha.data == {"value": "2"}
    meta = alpha.metadata
    assert meta is not None and meta.labels
    assert meta.labels["simple-gitops.io/service"] == "app"
    assert meta.labels["app.kubernetes.io/managed-by"] == "simple-gitops"
    # The commit is on our records, not on the objects (a commit would change them all).
    assert "simple-gitops.io/commit" not in (meta.annotations or {})
    with pytest.raises(k8s.ApiException) as gone:
        core.read_namespaced_config_map("beta", ns)
    assert gone.value.status == 404
    assert [o["name"] for o in latest.pruned_objects] == ["beta"]
    assert core.read_namespaced_config_map("handmade", ns).data == {"by": "hand"}
    assert core.read_namespaced_config_map("gamma", ns).data == {"value": "1"}


def test_broken_yaml_fails_naming_the_file_and_leaves_the_cluster_as_it_was(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "1")})
    repo, (service,) = make_repo(git_repo, "app")
    sync(repo)
    finished(service, 1)

    git_repo.commit(
        {
            "deploy/app/a.yaml": cm("alpha", ns, "2"),
            "deploy/app/bad.yaml": cm("ok", ns, "1")
            + "---\nkind: ConfigMap\nmetadata: {name: x}\n",
        }
    )
    sync(repo)
    failed = finished(service, 2)[-1]

    assert failed.status == Status.FAILED
    assert "deploy/app/bad.yaml" in failed.error and "document 2" in failed.error
    assert "apiVersion" in failed.error
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "1"}
    names = [i.metadata.name for i in core.list_namespaced_config_map(ns).items if i.metadata]
    assert "ok" not in names


def test_quick_commits_queued_behind_a_busy_cluster_end_at_the_last_in_order(
    apply_worker: dict[str, WorkerProcess],
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "0")})
    repo, (service,) = make_repo(git_repo, "app")
    sync(repo)
    finished(service, 1)

    # Someone else holds the cluster: the three commits pile up behind it.
    lease = redis_client().lock(lease_key(cluster.pk), timeout=60, thread_local=False)
    # The first apply lets its lease go a moment after its row is final.
    assert lease.acquire(blocking=True, blocking_timeout=10)
    try:
        commits = []
        for value in ("1", "2", "3"):
            commits.append(git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, value)}))
            sync(repo)
        deadline = time.monotonic() + 60
        while service.deployments.exclude(bundle_digest="").count() < 4:
            assert time.monotonic() < deadline, list(service.deployments.values("status"))
            time.sleep(0.1)
        assert core.read_namespaced_config_map("alpha", ns).data == {"value": "0"}
    finally:
        lease.release()
        # What a lease holder does when it lets go with deployments still ready.
        hand_on(cluster)
    history = finished(service, 4, timeout=90)

    assert [d.commit_sha for d in history[1:]] == commits
    assert [d.status for d in history[1:]] == [
        Status.SUPERSEDED,
        Status.SUPERSEDED,
        Status.SUCCEEDED,
    ]
    assert all(d.started_at is None for d in history[1:3])
    finishing = [d.finished_at for d in history]
    assert finishing == sorted(finishing), "finished in the order they were queued"  # type: ignore[type-var]
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "3"}


def test_an_apply_worker_killed_mid_apply_is_resumed_by_the_sweep_within_a_minute(
    apply_worker: dict[str, WorkerProcess],
    worker_database_url: str,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ensure_sweep_schedule()
    ns = kube_namespace
    git_repo.commit({"deploy/app/all.yaml": many_cms(400, ns, "1")})
    repo, (service,) = make_repo(git_repo, "app")
    with beat_process(worker_database_url, env=CRASH_RECOVERY_ENV):
        sync(repo)
        deadline = time.monotonic() + 60
        while not service.deployments.filter(status=Status.APPLYING).exists():
            assert time.monotonic() < deadline, list(service.deployments.values("status"))
            time.sleep(0.02)
        apply_worker["apply"].kill()
        killed_at = time.monotonic()
        interrupted = service.deployments.get()
        assert interrupted.status == Status.APPLYING
        apply_worker["apply"] = start_worker(
            worker_database_url, queues="apply", concurrency=1, env=CRASH_RECOVERY_ENV
        )

        (done,) = finished(service, 1, timeout=60)
        recovered_in = time.monotonic() - killed_at

    assert done.pk == interrupted.pk and done.status == Status.SUCCEEDED, done.error
    assert recovered_in < 60, f"recovered after {recovered_in:.0f}s"
    assert service.deployments.count() == 1
    assert done.object_count == 400
    names = {i.metadata.name for i in core.list_namespaced_config_map(ns).items if i.metadata}
    assert {f"bulk-{i:04d}" for i in range(400)} <= names


def test_notifications_report_success_and_failure_and_a_hanging_receiver_stalls_nothing(
    apply_worker: dict[str, WorkerProcess],
    cluster: Cluster,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    listening, hanging = Receiver(), Receiver(delay=30)
    try:
        NotificationTarget.objects.create(url=listening.url)
        NotificationTarget.objects.create(url=hanging.url)
        git_repo.commit({"deploy/app/a.yaml": cm("alpha", kube_namespace, "1")})
        repo, (service,) = make_repo(git_repo, "app")
        sync(repo)
        first = finished(service, 1)[0]
        # The second change needs the (single-process) apply worker again: were the
        # hanging notification sent from the apply path, it would wait 30 s for it.
        git_repo.commit({"deploy/app/a.yaml": cm("alpha", kube_namespace, "2")})
        sync(repo)
        second = finished(service, 2, timeout=20)[-1]
        git_repo.commit({"deploy/app/a.yaml": "kind: [unclosed\n"})
        sync(repo)
        third = finished(service, 3, timeout=20)[-1]

        assert (first.status, second.status, third.status) == (
            Status.SUCCEEDED,
            Status.SUCCEEDED,
            Status.FAILED,
        )
        assert second.finished_at - first.finished_at < timedelta_seconds(10)  # type: ignore[operator]
        deadline = time.monotonic() + 60
        while len(listening.bodies) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        statuses = sorted(str(b["status"]) for b in listening.bodies)
        assert statuses == ["failed", "succeeded", "succeeded"]
        assert any("GitOps deployment failed: app" in str(b["text"]) for b in listening.bodies)
    finally:
        listening.close()
        hanging.close()


def timedelta_seconds(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


def service_yaml(name: str, namespace: str, cluster_ip: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80}]},
        }
    )


def names_of(refs: list[dict[str, str]]) -> set[str]:
    return {ref["name"] for ref in refs}


def test_what_a_failed_deployment_applied_is_pruned_once_it_leaves_git(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    """Commit 1: ConfigMap orphan-x and two Services asking for the same cluster IP. Each
    Service passes its dry run alone (the address is free), the second is refused when
    applied: the deployment fails with orphan-x and one Service on the cluster. Commit 2
    removes both files: the next deployment prunes them."""
    ns = kube_namespace
    taken = {s.spec.cluster_ip for s in core.list_service_for_all_namespaces().items if s.spec}
    address = next(f"10.0.0.{i}" for i in range(240, 10, -1) if f"10.0.0.{i}" not in taken)
    git_repo.commit(
        {
            "deploy/app/orphan.yaml": cm("orphan-x", ns, "1"),
            "deploy/app/services.yaml": service_yaml("one", ns, address)
            + "---\n"
            + service_yaml("two", ns, address),
            "deploy/app/keep.yaml": cm("keep", ns, "1"),
        }
    )
    repo, (service,) = make_repo(git_repo, "app")
    sync(repo)
    (failed,) = finished(service, 1)
    assert (failed.status, failed.reason) == (Status.FAILED, Deployment.Reason.APPLY)
    assert "provided IP is already allocated" in failed.error
    live = {i.metadata.name for i in core.list_namespaced_service(ns).items if i.metadata}
    assert len(live & {"one", "two"}) == 1
    recorded = {row.name for row in service.inventory.all()}
    assert recorded == {"orphan-x", "keep"} | live

    git_repo.commit({"deploy/app/orphan.yaml": None, "deploy/app/services.yaml": None})
    sync(repo)
    latest = finished(service, 2)[-1]

    assert latest.status == Status.SUCCEEDED, latest.error
    assert names_of(latest.pruned_objects) == {"orphan-x"} | live
    configs = {i.metadata.name for i in core.list_namespaced_config_map(ns).items if i.metadata}
    assert "orphan-x" not in configs and "keep" in configs
    assert [i for i in core.list_namespaced_service(ns).items] == []
    assert {row.name for row in service.inventory.all()} == {"keep"}


def create_only_namespace(name: str) -> str:
    """The Namespace the render stage adds for a service that names its namespace."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "annotations": {CREATE_ONLY_ANNOTATION: "true"}},
        }
    )


def test_a_service_deploys_into_a_namespace_created_for_it_which_is_never_pruned(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    made = f"{kube_namespace}-app"
    git_repo.commit(
        {
            "deploy/app/namespace.yaml": create_only_namespace(made),
            "deploy/app/a.yaml": cm("alpha", made, "1"),
            "deploy/app/b.yaml": cm("beta", made, "1"),
        }
    )
    repo, (service,) = make_repo(git_repo, "app")
    sync(repo)
    (first,) = finished(service, 1)
    assert first.status == Status.SUCCEEDED, first.error
    namespace = core.read_namespace(made).to_dict()
    assert namespace["metadata"]["labels"]["simple-gitops.io/service"] == "app"
    assert core.read_namespaced_config_map("alpha", made).data == {"value": "1"}
    assert {row.kind for row in service.inventory.all()} == {"ConfigMap"}

    # The service's objects leave Git, and so does its namespace's manifest.
    git_repo.commit({"deploy/app/namespace.yaml": None, "deploy/app/a.yaml": None})
    sync(repo)
    second = finished(service, 2)[-1]

    assert second.status == Status.SUCCEEDED, second.error
    assert names_of(second.pruned_objects) == {"alpha"}
    after = core.read_namespace(made).to_dict()
    assert after["metadata"]["deletion_timestamp"] is None
    assert after["metadata"]["uid"] == namespace["metadata"]["uid"]
    assert after["status"]["phase"] == "Active"


def test_an_existing_namespace_with_foreign_labels_is_left_exactly_as_it_was(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    """kube_namespace was created by the test fixture with a label of its own."""
    before = core.read_namespace(kube_namespace).to_dict()
    git_repo.commit(
        {
            "deploy/app/namespace.yaml": create_only_namespace(kube_namespace),
            "deploy/app/a.yaml": cm("alpha", kube_namespace, "1"),
        }
    )
    repo, (service,) = make_repo(git_repo, "app")
    sync(repo)
    (done,) = finished(service, 1)

    assert done.status == Status.SUCCEEDED, done.error
    assert f"namespace/{kube_namespace} exists, left as it is" in done.output
    assert core.read_namespace(kube_namespace).to_dict() == before
    assert {row.kind for row in service.inventory.all()} == {"ConfigMap"}
