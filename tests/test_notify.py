"""Deployment results reach the configured webhook URL, and a broken receiver never
fails a deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncworker.models import Deployment, NotificationTarget, Repository, Service
from syncworker.pipeline.notify import notify
from tests.support.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def finished_deployment(
    status: str = Deployment.Status.SUCCEEDED, error: str = "", reason: str = ""
) -> Deployment:
    repo = Repository.objects.create(
        key="n", provider="github", owner="acme", name="infra", url="https://github.com/acme/infra"
    )
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    return Deployment.objects.create(
        service=service, commit_sha="c0ffee" * 6 + "abcd", status=status, error=error, reason=reason
    )


def test_a_finished_deployment_is_posted_in_slack_compatible_form(receiver: Receiver) -> None:
    NotificationTarget.objects.create(url=receiver.url)
    deployment = finished_deployment(
        Deployment.Status.FAILED, error="ConfigMap x: invalid", reason="render"
    )

    assert notify(deployment.pk) == 1

    (body,) = receiver.bodies
    assert str(body["text"]).startswith(
        "GitOps deployment failed: web @ c0ffeec0ffee (poll): invalid bundle"
    )
    assert (body["status"], body["reason"]) == ("failed", "render")
    assert body["repository"] == "acme/infra"
    assert body["error"] == "ConfigMap x: invalid"


def test_disabled_targets_and_unfinished_deployments_send_nothing(receiver: Receiver) -> None:
    NotificationTarget.objects.create(url=receiver.url, enabled=False)
    assert notify(finished_deployment().pk) == 0
    NotificationTarget.objects.update(enabled=True)
    queued = finished_deployment_queued()
    assert notify(queued.pk) == 0
    assert receiver.bodies == []


def finished_deployment_queued() -> Deployment:
    service = Service.objects.get(name="web")
    return Deployment.objects.create(service=service, commit_sha="1" * 40)


def test_an_unreachable_receiver_is_logged_without_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    NotificationTarget.objects.create(url="http://127.0.0.1:9/hook/SECRET-PATH")

    assert notify(finished_deployment().pk) == 0

    assert "notify http://127.0.0.1/…" in caplog.text
    assert "SECRET-PATH" not in caplog.text
