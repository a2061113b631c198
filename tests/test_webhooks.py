"""GitHub push webhooks: only a correctly signed push to the watched branch polls."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.test import Client

from syncworker.models import Repository
from syncworker.tasks import poll_repository

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-do-not-leak"


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="infra",
        provider="github",
        owner="acme",
        name="infra",
        url="https://github.com/acme/infra",
        webhook_secret=SECRET,
    )


@pytest.fixture
def queued() -> Iterator[list[tuple[object, ...]]]:
    """Poll tasks really published to the Redis broker while the test runs (the tests
    run in autocommit, so the webhook's after-commit enqueue happens at once)."""
    calls: list[tuple[object, ...]] = []

    def record(sender: str | None = None, body: Any = None, **kwargs: Any) -> None:
        if sender == poll_repository.name:
            args, options = body[0], body[1]
            calls.append((*args, options.get("trigger")))

    before_task_publish.connect(record, weak=False)
    yield calls
    before_task_publish.disconnect(record)


def push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps(
        {
            "ref": ref,
            "repository": {
                "full_name": "acme/infra",
                "clone_url": "https://github.com/acme/infra.git",
            },
        }
    ).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(
    client: Client,
    body: bytes,
    *,
    event: str = "push",
    path: str = "/v1/webhooks/github",
    **headers: str,
) -> Any:
    return client.post(
        path,
        data=body,
        content_type="application/json",
        headers={"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1", **headers},
    )


def test_a_signed_push_to_the_watched_branch_queues_a_poll(
    client: Client, repo: Repository, queued: list[tuple[object, ...]]
) -> None:
    body = push()
    response = send(client, body, **{"X-Hub-Signature-256": sign(body)})
    assert response.status_code == 202
    assert queued == [(repo.pk, "webhook")]


def test_the_repository_can_be_named_in_the_url(
    client: Client, repo: Repository, queued: list[tuple[object, ...]]
) -> None:
    body = push()
    response = send(
        client, body, path="/v1/webhooks/github/infra", **{"X-Hub-Signature-256": sign(body)}
    )
    assert response.status_code == 202
    assert queued == [(repo.pk, "webhook")]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Hub-Signature-256": sign(push(), "wrong-secret")}, id="wrong-secret"),
        pytest.param(
            {
                "X-Hub-Signature": "sha1="
                + hmac.new(SECRET.encode(), push(), hashlib.sha1).hexdigest()
            },
            id="sha1-only",
        ),
        pytest.param({"X-Hub-Signature-256": sign(push()).replace("sha256=", "")}, id="no-prefix"),
    ],
)
def test_unsigned_or_badly_signed_requests_are_rejected_and_queue_nothing(
    client: Client,
    repo: Repository,
    queued: list[tuple[object, ...]],
    headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    response = send(client, push(), **headers)
    assert response.status_code in (401, 403)
    assert queued == []
    assert SECRET not in caplog.text


def test_a_tampered_body_is_rejected(
    client: Client, repo: Repository, queued: list[tuple[object, ...]]
) -> None:
    signature = sign(push())
    tampered = push().replace(b"refs/heads/main", b"refs/heads/evil")
    response = send(client, tampered, **{"X-Hub-Signature-256": signature})
    assert response.status_code == 403
    assert queued == []


def test_pushes_to_other_branches_and_other_events_do_no_work(
    client: Client, repo: Repository, queued: list[tuple[object, ...]]
) -> None:
    other = push("refs/heads/feature")
    assert send(client, other, **{"X-Hub-Signature-256": sign(other)}).status_code == 200
    issue = b'{"action": "opened", "repository": {"full_name": "acme/infra"}}'
    assert (
        send(client, issue, event="issues", **{"X-Hub-Signature-256": sign(issue)}).status_code
        == 200
    )
    assert queued == []


def test_a_ping_is_answered(client: Client, repo: Repository) -> None:
    body = b'{"zen": "Keep it simple.", "repository": {"full_name": "acme/infra"}}'
    response = send(client, body, event="ping", **{"X-Hub-Signature-256": sign(body)})
    assert response.status_code == 200
    assert response.json()["detail"] == "pong"


def test_a_repository_without_a_secret_accepts_no_webhook(
    client: Client, repo: Repository, queued: list[tuple[object, ...]]
) -> None:
    Repository.objects.filter(pk=repo.pk).update(webhook_secret="")
    body = push()
    assert send(client, body, **{"X-Hub-Signature-256": sign(body, "")}).status_code == 403
    assert queued == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"[]", "body must be a JSON object, not a list", id="array"),
        pytest.param(b'"push"', "body must be a JSON object, not a string", id="string"),
        pytest.param(b"null", "body must be a JSON object, not null", id="null"),
        pytest.param(b"[" * 100_000, "body is not JSON", id="nested-too-deep"),
        pytest.param(
            b'{"repository": "acme/infra"}', "'repository' must be an object", id="repo-str"
        ),
        pytest.param(b'{"repository": 42}', "'repository' must be an object", id="repo-number"),
        pytest.param(b'{"repository": null}', "'repository' must be an object", id="repo-null"),
    ],
)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_body_that_cannot_be_a_push_is_refused_naming_what_is_wrong(
    client: Client, repo: Repository, queued: list[tuple[object, ...]], body: bytes,
    message: str, signed: bool,
) -> None:  # fmt: skip
    signature = sign(body) if signed else "sha256=" + "0" * 64
    response = send(client, body, **{"X-Hub-Signature-256": signature})
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert queued == []


def test_a_push_named_by_key_needs_a_string_ref(
    client: Client, repo: Repository, queued: list[tuple[object, ...]]
) -> None:
    for body in (b"[]", b'{"ref": 5}', b'{"repository": "acme/infra"}'):
        response = send(
            client, body, path="/v1/webhooks/github/infra", **{"X-Hub-Signature-256": sign(body)}
        )
        assert response.status_code == 400, body
    assert "'ref' must be a string" in response.json()["detail"]
    assert queued == []
