"""Hooks in the pipeline without the test cluster: a deployment between its hooks never
depends on one message (the recovery sweep sends again what a lost message would have
sent; real Redis broker, the queued messages read back from it), and an applyer that
cannot run hooks applies the bundle without them and says so."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from syncworker.kube.hooks import PRE_SYNC, SYNC
from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline import lifecycle
from syncworker.pipeline.deploying import apply_deployment, lease_key
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from syncworker.pipeline.recovery import EPOCH_KEY, requeue_stuck
from syncworker.pipeline.redisconn import redis_client
from tests.support.gitserver import WorkingCopy

pytestmark = [pytest.mark.django_db(transaction=True)]
Status = Deployment.Status
QUEUES = ("apply", "health")


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster.objects.create(
        name="local",
        applyer=Cluster.Applyer.FILE,
        settings={"directory": str(tmp_path / "out")},
        is_default=True,
    )


@pytest.fixture
def service(cluster: Cluster) -> Service:
    repo = Repository.objects.create(key="r", provider="git", url="http://127.0.0.1:9/r.git")
    return Service.objects.create(name="shop", repository=repo, k8s_yaml_dir="deploy/shop")


def sent() -> dict[str, list[tuple[str, int]]]:
    """The tasks waiting in the apply and health queues: (task name, deployment id)."""
    found: dict[str, list[tuple[str, int]]] = {}
    client = redis_client()
    for queue in QUEUES:
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            task, args = message["headers"]["task"], message["headers"]["argsrepr"]
            found.setdefault(queue, []).append((task, int(args.strip("(),"))))
    return found


def applying(service: Service, cluster: Cluster) -> int:
    row = Deployment.objects.create(
        service=service,
        cluster=cluster,
        commit_sha="c0ffee",
        status=Status.APPLYING,
        bundle="---\n",
        bundle_digest="d",
        started_at=timezone.now(),
    )
    return row.pk


def test_the_sweep_resends_the_apply_after_presync_and_the_check_of_an_overdue_presync_wait(
    service: Service, cluster: Cluster
) -> None:
    client = redis_client()
    client.delete(*QUEUES, lease_key(cluster.pk))
    client.set(EPOCH_KEY, "kept")  # the broker kept its data: only what looks lost is sent
    now = timezone.now()
    # PreSync hooks succeeded, the apply message was lost: applying, no wait, no lease.
    applies = applying(service, cluster)
    assert lifecycle.await_pre_sync(applies, deadline=now + timedelta(minutes=5), hooks=[])
    assert lifecycle.pre_sync_done(applies, hooks=[])
    # The check of a PreSync wait was lost: its deadline passed a while ago.
    overdue = applying(service, cluster)
    assert lifecycle.await_pre_sync(overdue, deadline=now - timedelta(minutes=2), hooks=[])
    # A live PreSync wait: its checks are still coming.
    live = applying(service, cluster)
    assert lifecycle.await_pre_sync(live, deadline=now + timedelta(minutes=5), hooks=[])
    assert not lifecycle.pre_sync_done(overdue + 1000, hooks=[])

    assert requeue_stuck() == [applies, overdue]
    assert sent() == {
        "apply": [("syncworker.apply_deployment", applies)],
        "health": [("syncworker.check_health", overdue)],
    }
    assert Deployment.objects.get(pk=applies).hook_phase == SYNC
    assert Deployment.objects.get(pk=live).hook_phase == PRE_SYNC
    assert live not in requeue_stuck()
    client.delete(*QUEUES)


def test_an_applyer_that_cannot_run_hooks_applies_the_bundle_without_them_and_says_so(
    git_repo: WorkingCopy, cluster: Cluster, tmp_path: Path
) -> None:
    hook = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": "db-migrate-",
            "annotations": {"argocd.argoproj.io/hook": "PreSync"},
        },
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "db:1"}]}
            }
        },
    }
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    git_repo.commit({"deploy/shop/app.yaml": yaml.safe_dump_all([settings, hook])})
    repo = Repository.objects.create(key="files", provider="git", url=git_repo.url)
    shop = Service.objects.create(name="shop", repository=repo, k8s_yaml_dir="deploy/shop")
    (pk,) = poll_repository(repo.pk).deployments
    fetch_and_render(pk)
    assert apply_deployment(pk).status == Status.SUCCEEDED
    done = Deployment.objects.get(pk=pk)
    assert "hooks not run: the FileApplyer cannot create them" in done.output
    assert (done.hooks, done.object_count) == ([], 1)
    written = list(yaml.safe_load_all((tmp_path / "out" / "shop.yaml").read_text()))
    assert [o["kind"] for o in written if o] == ["ConfigMap"]
    assert shop.inventory.count() == 1
