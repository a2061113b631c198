"""No HTTP 500 from any door: well over 100 malformed requests (webhooks, REST list,
detail and actions, the status API, artifact downloads, admin pages) each get a 4xx
(or the page they asked for) with a message naming the parameter or field; and the
actions answer 503, leaving nothing half-recorded, while the broker (a real Redis of
the test's own, really stopped) is down."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncworker.artifacts.storage import store_artifact
from syncworker.models import Cluster, Deployment, NotificationTarget, Repository, Service
from syncworker.pipeline import recovery
from syncworker.pipeline.redisconn import redis_client
from tests.support.broker_fixtures import queued, restart
from tests.support.services import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK_SECRET = "whsec-no-500"
OUTSIDE = b"OUTSIDE-THE-ARTIFACTS-ROOT"
INIT_SH = b"#!/bin/sh\necho hello\n"
NOT_FOUND = "Not Found"  # Django's own 404 page: the path is what was not found
DOES_NOT_EXIST = "doesn\u2019t exist"  # the admin's message for an unknown id


@dataclass
class Case:
    method: str
    path: str
    status: int | tuple[int, ...]
    message: str | None  # in the body or a header; None where the status says it all
    body: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = {k: v for k, v in self.kwargs.items() if k != "content_type"}
        return f"{self.method.upper()} {self.path[:80]} {str(self.body)[:40]} {extra}"[:200]


def get(path: str, status: int | tuple[int, ...], message: str | None, **kwargs: Any) -> Case:
    return Case("get", path, status, message, kwargs=kwargs)


def post(
    path: str, status: int | tuple[int, ...], message: str | None, body: Any = None, **kwargs: Any
) -> Case:
    return Case("post", path, status, message, body, kwargs)


@dataclass
class World:
    repo: Repository
    service: Service
    cluster: Cluster
    succeeded: Deployment
    failed: Deployment
    root: Path


@pytest.fixture
def world(settings: Any, tmp_path: Path) -> World:
    root = tmp_path / "artifacts"
    root.mkdir()
    settings.GITOPS = {**settings.GITOPS, "ARTIFACTS_ROOT": root}
    store_artifact("scripts/web/init.sh", io.BytesIO(INIT_SH), uploaded_by="ci")
    (tmp_path / "outside.txt").write_bytes(OUTSIDE)
    (root / "scripts" / "link").symlink_to(tmp_path / "outside.txt")
    repo = Repository.objects.create(
        key="infra",
        provider="github",
        owner="acme",
        name="infra",
        url="https://github.com/acme/infra",
        webhook_secret=WEBHOOK_SECRET,
    )
    cluster = Cluster.objects.create(name="c1", settings={"directory": str(tmp_path)})
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    bundle = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
    succeeded = Deployment.objects.create(
        service=service,
        commit_sha="1" * 40,
        status="succeeded",
        bundle=bundle,
        bundle_digest="d" * 64,
        object_count=1,
    )
    failed = Deployment.objects.create(service=service, commit_sha="2" * 40, status="failed")
    NotificationTarget.objects.create(url="https://hooks.example.com/services/T0/B0/xyz")
    return World(repo, service, cluster, succeeded, failed, root)


@pytest.fixture
def staff() -> APIClient:
    user = User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def admin_browser(admin_user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    return client


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def content(response: Any) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def run(client: Client, case: Case) -> str | None:
    """None when the case held, else what went wrong."""
    send = getattr(client, case.method)
    kwargs = dict(case.kwargs)
    if case.body is not None:
        kwargs["data"] = case.body
    response = send(case.path, **kwargs)
    text = content(response).decode(errors="replace") + str(dict(response.headers))
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    if response.status_code not in expected:
        return f"{case.label}: HTTP {response.status_code}, wanted {expected}: {text[:300]}"
    if case.message is not None and case.message.lower() not in text.lower():
        return f"{case.label}: {case.message!r} not in {text[:300]}"
    return None


def run_all(client: Client, cases: list[Case]) -> list[str]:
    return [problem for case in cases if (problem := run(client, case)) is not None]


JSON = {"content_type": "application/json"}
PUSH_EVENT = {**JSON, "HTTP_X_GITHUB_EVENT": "push"}
UNSIGNED = {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + "0" * 64}
REPOSITORY = {"full_name": "acme/infra", "clone_url": "https://github.com/acme/infra.git"}


def webhook_cases() -> list[Case]:
    # (body, message without a key in the URL, message with one and a good signature)
    bodies = [
        (b"{", "body is not JSON", "body is not JSON"),
        (b"\xff\xfe\x00", "body is not JSON", "body is not JSON"),
        (b"", "body is not JSON", "body is not JSON"),
        (b"[" * 100_000, "body is not JSON", "body is not JSON"),
    ]
    not_objects: list[Any] = [[], [{"ref": "refs/heads/main"}], "push", 5, None, True]
    for value in not_objects:
        bodies.append((json.dumps(value).encode(), "must be a JSON object", "JSON object"))
    not_repositories: list[Any] = ["acme/infra", 7, None, ["acme"], False]
    for value in not_repositories:
        bodies.append((json.dumps({"repository": value}).encode(), "'repository'", "'ref'"))
    cases = []
    for body, message, keyed_message in bodies:
        signed = {"HTTP_X_HUB_SIGNATURE_256": sign(body)}
        cases += [
            post("/v1/webhooks/github", 400, message, body, **PUSH_EVENT, **UNSIGNED),
            post("/v1/webhooks/github", 400, message, body, **PUSH_EVENT, **signed),
            post("/v1/webhooks/github/infra", 403, "signature", body, **PUSH_EVENT, **UNSIGNED),
            post("/v1/webhooks/github/infra", 400, keyed_message, body, **PUSH_EVENT, **signed),
        ]
    not_refs: list[Any] = [5, ["refs/heads/main"], None, {}]
    for ref in not_refs:
        body = json.dumps({"ref": ref, "repository": REPOSITORY}).encode()
        signed = {"HTTP_X_HUB_SIGNATURE_256": sign(body)}
        cases.append(post("/v1/webhooks/github", 400, "'ref'", body, **PUSH_EVENT, **signed))
    push = json.dumps({"ref": "refs/heads/main", "repository": REPOSITORY}).encode()
    signed = {"HTTP_X_HUB_SIGNATURE_256": sign(push)}
    hook = "/v1/webhooks/github"
    cases += [
        post(hook, 400, "Content-Length", push, **PUSH_EVENT, CONTENT_LENGTH="abc"),
        post(hook, 413, "payload too large", push, **PUSH_EVENT, CONTENT_LENGTH="99999999999"),
        post(hook, 401, "X-Hub-Signature-256", push, **PUSH_EVENT),
        post(hook, 403, "signature", push, **PUSH_EVENT, HTTP_X_HUB_SIGNATURE_256="sha256=é"),
        post(f"{hook}/nope", 403, "signature", push, **PUSH_EVENT, **signed),
        post(hook, 200, "ignored", push, **JSON, HTTP_X_GITHUB_EVENT="issues", **signed),
        get(hook, 405, None),
    ]
    return cases


def test_malformed_webhooks_get_a_4xx_naming_what_is_wrong(world: World) -> None:
    cases = webhook_cases()
    assert len(cases) >= 60
    assert run_all(Client(raise_request_exception=False), cases) == []


def rest_cases(w: World) -> list[Case]:
    cases = []
    for resource in ("repositories", "services", "clusters", "deployments", "artifacts"):
        for bad_id in ("abc", "99999999999999999999", "-1", "%C2%B2", "%00", "1.5"):
            message = "matches" if bad_id.lstrip("-").isdigit() else "not found"
            cases.append(get(f"/api/{resource}/{bad_id}/", 404, message))
    for action in ("repositories/{}/sync/", "services/{}/redeploy/", "deployments/{}/rollback/"):
        for bad_id in ("abc", "99999999999999999999", "0"):
            message = "not found" if bad_id == "abc" else "matches"
            cases.append(post("/api/" + action.format(bad_id), 404, message))
        cases.append(get("/api/" + action.format(1), 405, "not allowed"))
    cases.append(post(f"/api/deployments/{w.failed.pk}/rollback/", 409, "did not succeed"))
    for resource in ("repositories", "services", "clusters"):
        url = f"/api/{resource}/"
        cases += [
            post(url, 400, "Expected a dictionary", [1, 2], format="json"),
            post(url, 400, "Expected a dictionary", "x", format="json"),
            post(url, 400, "Expected a dictionary", 5, format="json"),
            post(url, 400, "JSON parse error", b"{", **JSON),
            post(url, 400, "nested too deeply", b"[" * 100_000, **JSON),
            post(url, 400, "JSON parse error", b'{"name": NaN}', **JSON),
            post(url, 400, "JSON parse error", b'{"name": "\xff"}', **JSON),
            post(url, 415, "Unsupported media type", b"<a/>", content_type="application/xml"),
        ]
    service: dict[str, Any] = {"name": "api", "repository": w.repo.pk, "k8s_yaml_dir": "api"}
    repo: dict[str, Any] = {"key": "x", "provider": "git", "url": "https://git.example.com/x.git"}
    deep: list[Any] = []
    for _ in range(500):
        deep = [deep]
    for resource, body, field_name in (
        ("services", {**service, "name": "Bad_Name"}, "name"),
        ("services", {**service, "repository": "abc"}, "repository"),
        ("services", {**service, "repository": 10**20}, "repository"),
        ("services", {**service, "cluster": [1]}, "cluster"),
        ("services", {**service, "name": "a\x00"}, "name"),
        ("services", {**service, "k8s_yaml_dir": "../etc"}, "k8s_yaml_dir"),
        ("repositories", {**repo, "poll_interval": 10**30}, "poll_interval"),
        ("repositories", {**repo, "poll_interval": "x"}, "poll_interval"),
        ("repositories", {**repo, "enabled": "maybe"}, "enabled"),
        ("repositories", {**repo, "url": "https://a\x00b/x"}, "url"),
        ("repositories", {**repo, "url": "https://u:p@git.example.com/x.git"}, "url"),
        ("clusters", {"name": "c2", "settings": "x"}, "settings"),
        ("clusters", {"name": "c3", "applyer": "kubernetes", "settings": {"context": "a\x00"}},
         "settings"),
        ("clusters", {"name": "c4", "applyer": "nope"}, "applyer"),
        ("clusters", {"name": "c5", "settings": {"a": deep}}, "settings"),
    ):  # fmt: skip
        cases.append(post(f"/api/{resource}/", 400, f'"{field_name}"', body, format="json"))
    upload = "/api/artifacts/"
    cases += [
        Case("patch", f"/api/repositories/{w.repo.pk}/", 400, "Expected a dictionary", [1],
             {"format": "json"}),
        Case("put", f"/api/repositories/{w.repo.pk}/", 400, '"key"', {}, {"format": "json"}),
        Case("patch", f"/api/clusters/{w.cluster.pk}/", 400, '"settings"', {"settings": [1]},
             {"format": "json"}),
        Case("put", "/api/artifacts/abc/", 404, "not found"),
        get("/api/artifacts/?kind=%00", 400, '"kind"'),
        get("/api/artifacts/?kind=nope", 400, '"kind"'),
        post(upload, 400, '"path"', {"path": "scripts/../etc/passwd", "file": upload_file()},
             format="multipart"),
        post(upload, 400, '"path"', {"path": "scripts/a\x00b", "file": upload_file()},
             format="multipart"),
        post(upload, 400, '"file"', {"path": "scripts/web/x.sh"}, format="multipart"),
        post(upload, 400, "boundary", b"xx", content_type="multipart/form-data"),
    ]  # fmt: skip
    for query, status, message in (
        ("since=2026-13-45T99:99:99", 400, '"since"'),
        ("until=garbage", 400, '"until"'),
        ("service=%C2%B2", 400, '"service"'),
        ("status=nope", 400, '"status"'),
        ("status=SUCCEEDED", 400, '"status"'),
        ("service=%00", 400, '"service"'),
        ("service=" + "a" * 300, 400, '"service"'),
        ("service=-1", 400, '"service"'),
        ("since=%00", 400, '"since"'),
        ("since=0001-01-01T00:00:00%2B05:00", 400, '"since"'),
        ("until=9999-12-31T23:59:59-05:00", 400, '"until"'),
        ("since=2026-02-30", 400, '"since"'),
        ("service=99999999999999999999999", 200, '"count":0'),  # a name made of digits
        ("service=999999999999999999", 200, '"count":0'),
        ("since=2000-01-01T00:00:00", 200, '"count":2'),
        ("since=", 200, '"count":2'),
        ("limit=99999999999999999999", 200, '"count":2'),
        ("limit=abc", 200, '"count":2'),
        ("offset=-1", 200, '"count":2'),
        ("offset=99999999999999999999", 200, '"results":[]'),
    ):
        cases.append(get(f"/api/deployments/?{query}", status, message))
    cases += [
        get("/v1/gitops/repos?since=%00&x=%ff", 200, '"count"'),
        post("/v1/gitops/repos", 405, "not allowed"),
        Case("delete", "/v1/gitops/repos", 405, "not allowed"),
        get("/api/schema/?format=zzz", 404, "Not found"),
        get("/api/deployments/?format=zzz", 404, "Not found"),
        get("/metrics?x=%00", 200, "gitops_"),
        get("/api/overview/?status=nope", 400, "status"),
        get("/api/overview/?status=%00&q=%00&repository=%00&cluster=%00", 400, None),
        get("/api/overview/?q=%00", (200, 400), None),
        get("/api/overview/?q=" + "x" * 5000, (200, 400), None),
        get("/api/overview/services/nope/", 404, "nope"),
        get("/api/overview/services/web/?limit=abc", 400, '"limit"'),
        get("/api/overview/services/web/?limit=99999999999999999999", 400, '"limit"'),
        get("/api/overview/services/web/deployments/99999999999999999999/", 404, "no deployment"),
        get("/api/overview/repositories/nope/", 404, "nope"),
        get("/?status=nope&page=abc", (200, 400), None),
        get("/?q=%00&page=99999999999999999999", (200, 400), None),
        get("/services/%00/", 404, None),
        get("/services/web/?fragment=%00", 200, None),
        post("/healthz", (200, 405), None),
    ]
    return cases


def upload_file() -> SimpleUploadedFile:
    return SimpleUploadedFile("x.sh", b"x")


def test_malformed_rest_and_status_api_requests_get_a_4xx_naming_the_field(
    staff: APIClient, world: World
) -> None:
    cases = rest_cases(world)
    assert len(cases) >= 100
    assert run_all(staff, cases) == []


def artifact_cases() -> list[Case]:
    cases = [
        get(path, 404, NOT_FOUND)
        for path in (
            "/scripts/../etc/passwd", "/scripts/%2e%2e/%2e%2e/etc/passwd",
            "/scripts/%252e%252e/x", "/scripts/web/%2e%2e/%2e%2e/%2e%2e/outside.txt",
            "/scripts/a%00b", "/scripts/a%5cb", "/scripts//web/init.sh", "/scripts/.hidden",
            "/scripts/web/", "/apps/%ff", "/configs/templates/../../x", "/scripts/link",
            "/scripts/" + "a/" * 300 + "x", "/scripts/web/init.sh/", "/scripts/web/init.sh%00",
        )
    ]  # fmt: skip
    init, size = "/scripts/web/init.sh", len(INIT_SH)
    for header, status, message in (
        ("bytes=abc", 200, None),
        ("bytes=5-1", 200, None),
        ("bytes=-0", 416, f"bytes */{size}"),
        ("bytes=" + "9" * 40 + "-", 200, None),
        ("bytes=0-0,1-1", 200, None),
        ("items=0-1", 200, None),
        ("bytes=\x00", 200, None),
        ("bytes=100000-", 416, f"bytes */{size}"),
        ("bytes=0-2", 206, f"bytes 0-2/{size}"),
        ("bytes=-99999", 206, f"bytes 0-{size - 1}/{size}"),
    ):
        cases.append(get(init, status, message, HTTP_RANGE=header))
    cases += [
        get(init, 200, None, HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE="garbage"),
        get(init, 200, None, HTTP_IF_MODIFIED_SINCE="not a date"),
        get(init, 200, None, HTTP_IF_NONE_MATCH="\x00,,"),
        Case("head", init, 200, None, kwargs={"HTTP_RANGE": "bytes=0-1"}),
        post(init, 405, None),
    ]
    return cases


def test_artifact_paths_and_headers_never_fail_nor_leave_the_root(world: World) -> None:
    cases = artifact_cases()
    assert len(cases) >= 25
    anonymous = Client(raise_request_exception=False)
    assert run_all(anonymous, cases) == []
    for case in cases:
        response = getattr(anonymous, case.method)(case.path, **case.kwargs)
        assert OUTSIDE not in content(response), case.label


ADMIN_MODELS = ("repository", "service", "cluster", "deployment", "appliedobject",
                "notificationtarget", "releaseartifact")  # fmt: skip


def admin_cases() -> list[Case]:
    admin = "/admin/syncworker"
    cases = [
        get(f"{admin}/{model}/{bad_id}/change/", 200, DOES_NOT_EXIST, follow=True)
        for model in ADMIN_MODELS
        for bad_id in ("abc", "99999999999999999999", "%00")
    ]
    for page in ("history", "delete"):
        cases.append(get(f"{admin}/deployment/abc/{page}/", 200, DOES_NOT_EXIST, follow=True))
    for query in (
        "queued_at__year=99999999999",
        "queued_at__year=9999",
        "queued_at__year=9999&queued_at__month=12",
        "queued_at__year=2026&queued_at__month=99999999999999999999",
        "queued_at__year=abc",
        "no_such_field=1",
        "status__exact__in=a",
    ):
        cases.append(get(f"{admin}/deployment/?{query}", 200, "filters not applied", follow=True))
    for query in ("status__exact=nope", "o=abc", "p=abc", "q=%00", "service__id__exact=abc"):
        cases.append(get(f"{admin}/deployment/?{query}", 200, "Select deployment", follow=True))
    for model, action in (
        ("deployment", "roll_back"),
        ("repository", "sync_now"),
        ("service", "redeploy"),
        ("notificationtarget", "delete_selected"),
        ("releaseartifact", "delete_selected"),
        ("cluster", "delete_selected"),
    ):
        for bad_id in ("abc", "1.5"):
            body = {"action": action, "index": "0", "_selected_action": [bad_id]}
            message = f"_selected_action: &#x27;{bad_id}&#x27; is not a"
            cases.append(post(f"{admin}/{model}/", 200, message, body, follow=True))
    # Other apps' admins are guarded the same way (GuardedSite wraps every registration).
    for changelist in (
        "/admin/auth/user/",
        "/admin/auth/group/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/django_celery_beat/intervalschedule/",
    ):
        body = {"action": "delete_selected", "index": "0", "_selected_action": ["abc"]}
        message = "_selected_action: &#x27;abc&#x27; is not a"
        cases.append(post(changelist, 200, message, body, follow=True))
    cases.append(
        get(
            "/admin/auth/user/?date_joined__year=99999999999",
            200,
            "filters not applied",
            follow=True,
        )
    )
    return cases


def test_admin_pages_with_bad_ids_and_filters_answer_with_a_message(
    admin_browser: Client, world: World
) -> None:
    cases = admin_cases()
    assert len(cases) >= 40
    assert run_all(admin_browser, cases) == []
    assert Deployment.objects.count() == 2  # no action ran on a bad selection


def test_actions_answer_503_and_record_nothing_while_the_broker_is_down(
    staff: APIClient, world: World, broker: RedisServer
) -> None:
    rollback_url = f"/api/deployments/{world.succeeded.pk}/rollback/"
    first = staff.post(rollback_url)
    assert first.status_code == 202
    assert queued(broker, "apply") == 1  # the test's own broker really took it

    broker.stop()
    for path in (
        f"/api/repositories/{world.repo.pk}/sync/",
        f"/api/services/{world.service.pk}/redeploy/",
        rollback_url,
    ):
        response = staff.post(path)
        assert response.status_code == 503, (path, response.content)
        assert "broker (Redis) is unreachable" in response.json()["detail"]
        assert response.headers["Retry-After"] == "30"
    push = json.dumps({"ref": "refs/heads/main"}).encode()
    hook = Client(raise_request_exception=False).post(
        "/v1/webhooks/github/infra",
        data=push,
        content_type="application/json",
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_HUB_SIGNATURE_256=sign(push),
    )
    assert hook.status_code == 503 and "broker" in hook.json()["detail"]

    # The refused rollback left no row behind, so the recovery sweep will not apply it
    # later behind the person's back: even when it believes the broker lost every
    # message (its epoch marker gone) and re-sends every unfinished deployment, only the
    # rollback that was accepted is among them.
    rollbacks = Deployment.objects.filter(trigger=Deployment.Trigger.ROLLBACK)
    assert list(rollbacks.values_list("pk", flat=True)) == [first.json()["id"]]
    again = restart(broker)
    try:
        redis_client().delete(recovery.EPOCH_KEY)
        assert recovery.requeue_stuck() == [first.json()["id"]]
    finally:
        again.stop()


def test_the_web_process_queues_again_once_the_broker_is_back(
    staff: APIClient, world: World, broker: RedisServer
) -> None:
    sync = f"/api/repositories/{world.repo.pk}/sync/"
    assert staff.post(sync).status_code == 202
    broker.stop()
    assert staff.post(sync).status_code == 503
    again = restart(broker)
    try:
        assert staff.post(sync).status_code == 202
        assert queued(again, "poll") == 1
    finally:
        again.stop()


def test_admin_and_dashboard_actions_say_the_broker_is_down_and_leave_nothing(
    admin_browser: Client, world: World, broker: RedisServer
) -> None:
    broker.stop()
    for model, action, pk in (
        ("deployment", "roll_back", world.succeeded.pk),
        ("repository", "sync_now", world.repo.pk),
        ("service", "redeploy", world.service.pk),
    ):
        body = {"action": action, "index": "0", "_selected_action": [str(pk)]}
        page = admin_browser.post(f"/admin/syncworker/{model}/", body, follow=True)
        assert page.status_code == 200
        assert "broker (Redis) is unreachable" in page.content.decode(), action
    for button in (
        "/repositories/infra/sync/",
        "/services/web/redeploy/",
        f"/services/web/deployments/{world.succeeded.pk}/rollback/",
    ):
        answer = admin_browser.post(button, HTTP_HX_REQUEST="true")
        assert answer.status_code == 503, button
        assert "broker (Redis) is unreachable" in answer.content.decode(), button
    assert not Deployment.objects.filter(trigger=Deployment.Trigger.ROLLBACK).exists()
