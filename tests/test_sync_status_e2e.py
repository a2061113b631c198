"""What "synced" means, end to end through worker processes, a Git server and the real
kube-apiserver: as Git says. After a rollback the service is out-of-sync, and drift
checks and self-heals keep it so, until a deployment from Git succeeds again; after a
failed deployment (render or apply) it is failed, drift checks keep it so, until one
succeeds."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from kubernetes import client as k8s

from syncworker.models import Cluster, Deployment, NotificationTarget, Service
from syncworker.pipeline import actions
from syncworker.tasks import check_drift
from tests.support.e2e import cm, finished, make_repo, sync
from tests.support.gitserver import WorkingCopy
from tests.support.receiver import Receiver
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def drift_check(service: Service) -> dict[str, Any]:
    result: dict[str, Any] = check_drift.apply_async((service.pk,), ignore_result=False).get(
        timeout=60
    )
    return result


def drift_notes(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        notes = [b for b in receiver.bodies if "drift" in b]
        if len(notes) >= count:
            return notes
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} drift notifications: {receiver.bodies}")


@pytest.fixture
def receiver() -> Any:
    receiver = Receiver()
    NotificationTarget.objects.create(url=receiver.url)
    yield receiver
    receiver.close()


def sync_state(service: Service) -> tuple[str, str]:
    service.refresh_from_db()
    return service.sync_status, service.sync_message


def test_a_rollback_is_out_of_sync_until_a_deployment_from_git_succeeds_again(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
    receiver: Receiver,
) -> None:
    ns = kube_namespace
    good_commit = git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "good")})
    repo, (service,) = make_repo(git_repo, "app")
    Service.objects.filter(pk=service.pk).update(wait=False)
    sync(repo)
    (good,) = finished(service, 1)
    head = git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "bad")})
    sync(repo)
    finished(service, 2)
    assert sync_state(service) == ("synced", "")

    actions.rollback(good)
    (*_, restored) = finished(service, 3)
    assert (restored.status, restored.trigger) == ("succeeded", "rollback")
    rolled_back = ("out-of-sync", f"rolled back to {good_commit[:12]}, Git is at {head[:12]}")
    assert sync_state(service) == rolled_back
    # The live objects are the rollback's: no drift, and still not what Git says.
    assert drift_check(service)["drift"] == []
    assert sync_state(service) == rolled_back

    staff = User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    browser = Client()
    browser.force_login(staff)
    page = browser.get(f"/services/{service.name}/").content.decode()
    assert rolled_back[1] in page
    (row,) = browser.get("/api/services/").json()["results"]
    assert (row["sync_status"], row["sync_message"]) == rolled_back

    # A self-heal re-applies the rollback's bundle: still rolled back, not Git.
    Service.objects.filter(pk=service.pk).update(self_heal=True)
    core.patch_namespaced_config_map("alpha", ns, {"data": {"value": "by-hand"}})
    assert drift_check(service)["self_heal"] is not None
    (*_, healed) = finished(service, 4)
    assert (healed.status, healed.trigger) == ("succeeded", Deployment.Trigger.SELF_HEAL)
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "good"}
    assert sync_state(service) == rolled_back
    assert drift_check(service)["drift"] == []
    assert sync_state(service) == rolled_back
    drifted, back = drift_notes(receiver, 2)[-2:]
    assert drifted["sync_status"] == "out-of-sync" and drifted["drift"]
    assert (back["sync_status"], back["sync_message"], back["drift"]) == (*rolled_back, [])
    assert "has no drift again, still out-of-sync: rolled back to" in str(back["text"])

    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "fixed")})
    sync(repo)
    (*_, from_git) = finished(service, 5)
    assert (from_git.status, from_git.trigger) == ("succeeded", "webhook")
    assert sync_state(service) == ("synced", "")
    assert drift_check(service)["drift"] == []
    assert sync_state(service) == ("synced", "")


def test_a_failed_deployment_keeps_the_service_failed_through_drift_checks_until_one_succeeds(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "good")})
    repo, (service,) = make_repo(git_repo, "app")
    Service.objects.filter(pk=service.pk).update(wait=False)
    sync(repo)
    finished(service, 1)
    assert sync_state(service) == ("synced", "")

    # Refused while rendering: it never reaches a cluster.
    git_repo.commit({"deploy/app/a.yaml": "kind: [unclosed\n"})
    sync(repo)
    (*_, unrendered) = finished(service, 2)
    assert (unrendered.status, unrendered.reason) == ("failed", Deployment.Reason.RENDER)
    assert unrendered.cluster_id is None
    failed = ("failed", f"deployment {unrendered.pk} failed: invalid bundle")
    assert sync_state(service) == failed
    # The live objects are still the last good bundle's: no drift, and not what Git says.
    assert drift_check(service)["drift"] == []
    assert sync_state(service) == failed

    # Refused by the apiserver's dry run (a port out of range): nothing of it applied.
    port = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns}}
    port["spec"] = {"ports": [{"port": 70000}]}
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "new") + "---\n" + yaml.safe_dump(port)})
    sync(repo)
    (*_, refused) = finished(service, 3)
    assert (refused.status, refused.reason) == ("failed", Deployment.Reason.APPLY)
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "good"}
    assert drift_check(service)["drift"] == []
    refused_state = ("failed", f"deployment {refused.pk} failed: rejected by the cluster")
    assert sync_state(service) == refused_state

    git_repo.commit({"deploy/app/a.yaml": cm("alpha", ns, "fixed")})
    sync(repo)
    (*_, fixed) = finished(service, 4)
    assert fixed.status == "succeeded", fixed.error
    assert drift_check(service)["drift"] == []
    assert sync_state(service) == ("synced", "")
