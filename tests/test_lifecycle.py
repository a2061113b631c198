"""The Deployment's lifecycle: guarded transitions with a reason, notified once."""

from __future__ import annotations

from typing import Any

import pytest

from syncworker.kube.refs import ObjectRef
from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline import lifecycle

pytestmark = pytest.mark.django_db
Status, Reason = Deployment.Status, Deployment.Reason


@pytest.fixture
def deployment() -> Deployment:
    repo = Repository.objects.create(key="r", provider="git", url="https://git.example/r.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    return Deployment.objects.create(service=service, commit_sha="a" * 40)


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


def test_success_needs_an_apply_that_started(deployment: Deployment) -> None:
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


def test_a_superseded_deployment_never_started(deployment: Deployment) -> None:
    assert lifecycle.supersede(deployment.pk)
    row = reread(deployment)
    assert (row.status, row.reason, row.started_at) == (Status.SUPERSEDED, "superseded", None)


def test_a_transient_error_puts_an_applying_deployment_back_in_the_queue(
    deployment: Deployment,
) -> None:
    assert not lifecycle.back_to_queue(deployment.pk, "not applying yet")
    lifecycle.start_applying(deployment.pk, Cluster.objects.create(name="c"))
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
