"""The Deployment's lifecycle: guarded transitions with a reason, notified once."""

from __future__ import annotations

from typing import Any

import pytest
from celery.signals import before_task_publish

from syncworker.kube.refs import ObjectRef
from syncworker.models import Cluster, Deployment, NotificationTarget, Repository, Service
from syncworker.pipeline import handoff, lifecycle
from syncworker.pipeline.status import status_fields

pytestmark = pytest.mark.django_db
Status, Reason = Deployment.Status, Deployment.Reason


@pytest.fixture
def deployment() -> Deployment:
    repo = Repository.objects.create(key="r", provider="git", url="https://git.example/r.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    return Deployment.objects.create(service=service, commit_sha="a" * 40)


@pytest.fixture
def rendered(deployment: Deployment) -> Deployment:
    Deployment.objects.filter(pk=deployment.pk).update(bundle="x", bundle_digest="d")
    return deployment


def reread(deployment: Deployment) -> Deployment:
    return Deployment.objects.get(pk=deployment.pk)


def test_a_failure_records_its_reason_and_only_the_first_transition_counts(
    deployment: Deployment, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        assert lifecycle.fail(deployment.pk, Reason.RENDER, "invalid bundle: x.yaml")
        assert not lifecycle.fail(deployment.pk, Reason.APPLY, "second writer")
        assert not lifecycle.succeed(deployment.pk)

    row = reread(deployment)
    assert (row.status, row.reason, row.error) == (
        Status.FAILED,
        "render",
        "invalid bundle: x.yaml",
    )
    assert row.started_at is not None and row.finished_at is not None
    assert len(callbacks) == 1, "a final state notifies once"


def test_a_failure_marks_its_service_failed_unless_the_bundle_was_applied_and_only_once(
    deployment: Deployment,
) -> None:
    service = Service.objects.filter(pk=deployment.service_id)
    service.update(sync_status=Service.SyncStatus.SYNCED)
    unhealthy = Deployment.objects.create(service_id=deployment.service_id, commit_sha="b" * 40)
    assert lifecycle.fail(unhealthy.pk, Reason.HEALTH, "not healthy within 60s")
    assert service.get().sync_status == "synced", "a failed health wait did apply the bundle"

    assert lifecycle.fail(deployment.pk, Reason.RENDER, "invalid bundle: x.yaml")
    expected = ("failed", f"deployment {deployment.pk} failed: invalid bundle")
    assert service.values_list("sync_status", "sync_message").get() == expected

    # A finished deployment cannot fail again, nor mark its service again.
    service.update(sync_status=Service.SyncStatus.SYNCED, sync_message="")
    assert not lifecycle.fail(deployment.pk, Reason.APPLY, "second writer")
    assert service.values_list("sync_status", "sync_message").get() == ("synced", "")


def test_success_needs_an_apply_that_started(rendered: Deployment) -> None:
    deployment = rendered
    cluster = Cluster.objects.create(name="c")
    assert not lifecycle.succeed(deployment.pk), "a queued deployment cannot succeed"
    assert lifecycle.start_applying(deployment.pk, cluster)
    pruned = [ObjectRef("v1", "ConfigMap", "shop", "old")]
    assert lifecycle.succeed(deployment.pk, output="applied", pruned=pruned)

    row = reread(deployment)
    assert (row.status, row.reason, row.cluster_id) == (Status.SUCCEEDED, "", cluster.pk)
    assert row.pruned_objects == [
        {"api_version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "old"}
    ]


def test_an_apply_starts_only_when_rendered_not_waiting_and_not_overtaken(
    deployment: Deployment,
) -> None:
    cluster = Cluster.objects.create(name="c")
    assert not lifecycle.start_applying(deployment.pk, cluster), "not rendered yet"
    Deployment.objects.filter(pk=deployment.pk).update(bundle="x", bundle_digest="d")
    newer = Deployment.objects.create(service=deployment.service, commit_sha="b" * 40)
    assert not lifecycle.start_applying(deployment.pk, cluster), "a newer one overtook it"
    Deployment.objects.filter(pk=newer.pk).update(status=Status.FAILED)
    assert lifecycle.start_applying(deployment.pk, cluster), "a failed newer one does not count"
    assert lifecycle.start_applying(deployment.pk, cluster), "again after a crashed worker"
    assert lifecycle.await_health(deployment.pk, deadline=reread(deployment).started_at)
    assert not lifecycle.start_applying(deployment.pk, cluster), "waiting for health"
    assert reread(deployment).status == Status.APPLYING


def test_a_final_state_queues_a_notification_only_when_a_target_is_enabled(
    rendered: Deployment, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[object] = []

    def record(sender: str | None = None, body: Any = None, **kwargs: Any) -> None:
        if sender == handoff.NOTIFY:
            sent.extend(body[0])

    before_task_publish.connect(record, weak=False)
    try:
        _finish_with_and_without_a_target(rendered, django_capture_on_commit_callbacks, sent)
    finally:
        before_task_publish.disconnect(record)


def _finish_with_and_without_a_target(
    rendered: Deployment, django_capture_on_commit_callbacks: Any, sent: list[object]
) -> None:
    cluster = Cluster.objects.create(name="c")
    lifecycle.start_applying(rendered.pk, cluster)
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.succeed(rendered.pk)
    assert sent == [], "no target: no notification task"

    NotificationTarget.objects.create(url="https://hooks.example/x")
    other = Deployment.objects.create(service=rendered.service, commit_sha="c" * 40)
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.fail(other.pk, Reason.RENDER, "bad")
    assert sent == [other.pk]


def test_a_superseded_deployment_never_started(deployment: Deployment) -> None:
    assert lifecycle.supersede(deployment.pk)
    row = reread(deployment)
    assert (row.status, row.reason, row.started_at) == (Status.SUPERSEDED, "superseded", None)


def test_a_transient_error_puts_an_applying_deployment_back_in_the_queue(
    rendered: Deployment,
) -> None:
    deployment = rendered
    assert not lifecycle.back_to_queue(deployment.pk, "not applying yet")
    assert lifecycle.start_applying(deployment.pk, Cluster.objects.create(name="c"))
    assert lifecycle.back_to_queue(deployment.pk, "connection refused")
    row = reread(deployment)
    assert (row.status, row.error) == (Status.QUEUED, "connection refused")


def test_a_bundle_is_stored_once_and_only_while_queued(deployment: Deployment) -> None:
    refs = [ObjectRef("v1", "ConfigMap", "", "a")]
    stored = lifecycle.store_bundle(
        deployment.pk, bundle="x", digest="d1", refs=refs, warnings=["a.yaml: document 2: skipped"]
    )
    again = lifecycle.store_bundle(deployment.pk, bundle="y", digest="d2", refs=refs)

    assert (stored, again) == (True, False)
    row = reread(deployment)
    assert (row.bundle, row.object_count, row.warnings) == (
        "x",
        1,
        ["a.yaml: document 2: skipped"],
    )


def test_a_status_update_moves_status_changed_at_only_when_a_state_changes(
    deployment: Deployment,
) -> None:
    service = Service.objects.filter(pk=deployment.service_id)
    service.update(**status_fields(sync_status=Service.SyncStatus.SYNCED))
    changed = service.get().status_changed_at
    assert changed is not None

    service.update(**status_fields(sync_status="synced", health="unknown", message="same"))
    row = service.get()
    assert (row.status_changed_at, row.health_message) == (changed, "same")

    service.update(**status_fields(health=Service.Health.PROGRESSING))
    moved = service.get().status_changed_at
    assert moved is not None and moved > changed
