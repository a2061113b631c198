"""Tokens, webhook secrets, notification URLs and Secret values from Git are never in an
admin page, an API answer, a stored error or a log line; the stored bundle keeps the
Secret values for a rollback, which only the apply path reads."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncworker.kube.secrets import MASK, UNREADABLE, mask_secret_values
from syncworker.models import Cluster, Deployment, NotificationTarget, Repository, Service
from syncworker.pipeline import actions
from syncworker.pipeline.polling import poll_repository
from tests.support.source_fixtures import GitHubRepo

pytestmark = pytest.mark.django_db

TOKEN = "ghp_admin_page_secret"
SECRET = "whsec_admin_page_secret"


@pytest.fixture
def plain_static(settings: object) -> None:
    settings.STORAGES = {  # type: ignore[attr-defined]
        **settings.STORAGES,  # type: ignore[attr-defined]
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="infra",
        provider="github",
        owner="acme",
        name="infra",
        url="https://github.com/acme/infra",
        token=TOKEN,
        webhook_secret=SECRET,
    )


def test_admin_pages_never_show_stored_credentials(
    admin_client: Client, repo: Repository, plain_static: None
) -> None:
    for url in (
        "/admin/syncworker/repository/",
        f"/admin/syncworker/repository/{repo.pk}/change/",
        "/admin/syncworker/repository/?q=infra",
    ):
        page = admin_client.get(url).content.decode()
        assert TOKEN not in page and SECRET not in page, url
    change = admin_client.get(f"/admin/syncworker/repository/{repo.pk}/change/")
    assert "A value is stored (write-only)" in change.content.decode()


def test_saving_the_admin_form_blank_keeps_and_the_checkbox_clears(
    admin_client: Client, repo: Repository, plain_static: None
) -> None:
    form = {
        "key": "infra", "provider": "github", "owner": "acme", "name": "infra",
        "url": "https://github.com/acme/infra", "api_url": "", "branch": "release",
        "token": "", "webhook_secret": "", "poll_interval": "60", "enabled": "on",
    }  # fmt: skip
    url = f"/admin/syncworker/repository/{repo.pk}/change/"
    assert admin_client.post(url, form).status_code == 302
    repo.refresh_from_db()
    assert (repo.branch, repo.token, repo.webhook_secret) == ("release", TOKEN, SECRET)

    assert admin_client.post(url, {**form, "clear_token": "on"}).status_code == 302
    repo.refresh_from_db()
    assert (repo.token, repo.webhook_secret) == ("", SECRET)


def test_a_rejected_token_is_neither_stored_in_the_error_nor_logged(
    github_repo: GitHubRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    Cluster.objects.create(name="c", is_default=True, settings={"directory": str(tmp_path)})
    github_repo.github.token = "the-right-token"
    github_repo.copy.commit({"svc/a.yaml": "kind: ConfigMap\n"})
    repo = Repository.objects.create(
        key="gh", provider="github", owner=github_repo.owner, name=github_repo.name,
        url=f"https://github.com/{github_repo.owner}/{github_repo.name}",
        api_url=github_repo.github.api_url, token=TOKEN,
    )  # fmt: skip
    Service.objects.create(name="svc", repository=repo, k8s_yaml_dir="svc")

    result = poll_repository(repo.pk)

    assert result.error and not result.transient
    repo.refresh_from_db()
    assert repo.last_error
    assert TOKEN not in repo.last_error
    assert TOKEN not in caplog.text


SECRET_DATA = "c3VwZXItc2VjcmV0LWRhdGE="  # base64 of the value below
SECRET_DATA_PLAIN = "super-secret-data"
SECRET_STRING = "super-secret-string-value"
CONFIG_VALUE = "hello-from-the-configmap"
BUNDLE = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: {CONFIG_VALUE}
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: shop
type: Opaque
data:
  password: {SECRET_DATA}
stringData:
  token: {SECRET_STRING}
"""


def never_shown(text: str) -> None:
    for value in (SECRET_DATA, SECRET_DATA_PLAIN, SECRET_STRING):
        assert value not in text


@pytest.fixture
def deployed(repo: Repository) -> Deployment:
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    return Deployment.objects.create(
        service=service, commit_sha="1" * 40, status="succeeded", bundle=BUNDLE,
        bundle_digest="d" * 64, object_count=2,
    )  # fmt: skip


def test_the_api_shows_configmap_values_and_never_secret_values(deployed: Deployment) -> None:
    staff = User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")

    detail = api.get(f"/api/deployments/{deployed.pk}/")
    listed = api.get("/api/deployments/")

    assert detail.status_code == 200
    bundle = detail.json()["bundle"]
    assert f"greeting: {CONFIG_VALUE}" in bundle
    assert f"password: {MASK}" in bundle and f"token: {MASK}" in bundle
    never_shown(detail.content.decode() + listed.content.decode())


def test_the_admin_shows_configmap_values_and_never_secret_values(
    admin_client: Client, deployed: Deployment
) -> None:
    change = admin_client.get(f"/admin/syncworker/deployment/{deployed.pk}/change/")
    listed = admin_client.get("/admin/syncworker/deployment/")

    page = change.content.decode()
    assert change.status_code == 200
    assert CONFIG_VALUE in page and f"password: {MASK}" in page
    assert 'name="bundle"' not in page  # no form field could render the stored bundle
    never_shown(page + listed.content.decode())


def test_a_rollback_stores_the_real_values_for_the_apply_path(deployed: Deployment) -> None:
    rollback = actions.rollback(deployed)

    rollback.refresh_from_db()
    assert rollback.bundle == deployed.bundle
    assert SECRET_STRING in rollback.bundle and SECRET_DATA in rollback.bundle


def test_masking_keeps_every_other_document_exactly_and_hides_value_lengths() -> None:
    short = BUNDLE.replace(SECRET_STRING, "x").replace(SECRET_DATA, "eA==")
    masked = mask_secret_values(BUNDLE)

    configmap = BUNDLE.split("---\n")[0]
    assert masked.startswith(configmap + "---\n")
    assert masked == mask_secret_values(short)  # 1 character or 25: the same marker
    secret = list(yaml.safe_load_all(masked))[1]
    assert secret["data"] == {"password": MASK} and secret["stringData"] == {"token": MASK}
    assert secret["metadata"]["name"] == "web-secret" and secret["type"] == "Opaque"


def test_masking_reaches_lists_flow_style_and_the_last_applied_annotation() -> None:
    text = (
        f"{{kind: Secret, apiVersion: v1, data: {{a: {SECRET_DATA}}}}}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        f"- {{kind: Secret, stringData: {{b: {SECRET_STRING}}}}}\n"
        f"- {{kind: ConfigMap, data: {{c: {CONFIG_VALUE}}}}}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  annotations:\n"
        f'    kubectl.kubernetes.io/last-applied-configuration: \'{{"stringData": '
        f'{{"t": "{SECRET_STRING}"}}}}\'\n'
        "stringData: null\n"
    )
    masked = mask_secret_values(text)

    never_shown(masked)
    assert CONFIG_VALUE in masked
    assert [d.get("kind") for d in yaml.safe_load_all(masked)] == ["Secret", "List", "Secret"]


def test_a_bundle_that_cannot_be_read_is_not_shown_at_all() -> None:
    broken = f"kind: Secret\nstringData:\n  token: {SECRET_STRING}\n  bad: [\n"
    assert mask_secret_values(broken) == UNREADABLE


SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecretpathXXXX"
SLACK_SECRET = "XXXXsecretpathXXXX"


def test_the_webhook_url_is_write_only_in_the_admin(
    admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    added = admin_client.post(
        "/admin/syncworker/notificationtarget/add/", {"url": SLACK_URL, "enabled": "on"},
        follow=True,
    )  # fmt: skip
    target = NotificationTarget.objects.get()
    pages = [added.content.decode()]
    for url in (
        "/admin/syncworker/notificationtarget/",
        f"/admin/syncworker/notificationtarget/{target.pk}/change/",
        f"/admin/syncworker/notificationtarget/{target.pk}/history/",
        f"/admin/syncworker/notificationtarget/{target.pk}/delete/",
        "/admin/",  # the recent-actions list repeats the admin log's text
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        pages.append(response.content.decode())
    for page in pages:
        assert SLACK_SECRET not in page
    assert "https://hooks.slack.com/…" in pages[2]
    assert SLACK_SECRET not in LogEntry.objects.get().object_repr
    assert SLACK_SECRET not in caplog.text


def test_saving_the_notification_form_blank_keeps_the_url_and_a_new_one_replaces_it(
    admin_client: Client,
) -> None:
    target = NotificationTarget.objects.create(url=SLACK_URL)
    change = f"/admin/syncworker/notificationtarget/{target.pk}/change/"

    assert admin_client.post(change, {"url": "", "enabled": ""}).status_code == 302
    target.refresh_from_db()
    assert (target.url, target.enabled) == (SLACK_URL, False)

    new = "https://hooks.slack.com/services/T1/B1/rotated"
    assert admin_client.post(change, {"url": new, "enabled": "on"}).status_code == 302
    target.refresh_from_db()
    assert target.url == new

    refused = admin_client.post("/admin/syncworker/notificationtarget/add/", {"url": ""})
    assert refused.status_code == 200
    assert "A URL is required." in refused.content.decode()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:9/services/T000/XXXXsecretpathXXXX", "http://127.0.0.1/…"),
        ("http://bot:pw@[::1]:9/hook?token=t0k", "http://::1/…"),
    ],
)
def test_a_notification_url_reads_host_only_in_the_admin_the_config_import_and_the_logs(
    url: str, shown: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One function (rules.host_only) for every place; the receivers are closed loopback
    ports, so the delivery fails and is logged."""
    from syncworker.config.importer import import_config
    from syncworker.config.schema import parse_config
    from syncworker.pipeline.notify import notify_drift

    report = import_config(parse_config(f"webhook_url: '{url}'\n"), dry_run=True)
    target = NotificationTarget.objects.create(url=url)
    repo = Repository.objects.create(key="n", provider="git", url="https://git.example/n.git")
    with caplog.at_level(logging.WARNING):
        notify_drift(Service.objects.create(name="web", repository=repo, k8s_yaml_dir="d"), [])

    planned = [str(c) for c in report.changes if c.kind == "notification"]
    assert str(target) == shown
    assert planned == [f"notification {shown}: created"]
    assert f"notify {shown}: ConnectionError" in caplog.text
    assert "secretpath" not in caplog.text + str(planned)
    assert "t0k" not in caplog.text + str(planned) and "pw@" not in caplog.text


def test_a_url_that_cannot_be_split_is_not_shown_at_all() -> None:
    from syncworker.rules import host_only

    assert host_only("http://[::1/hook-SECRET") == "(not a URL)"
