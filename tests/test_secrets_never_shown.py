"""Tokens and webhook secrets are write-only: never in an admin page, an API answer, a
stored error or a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.test import Client

from syncworker.models import Cluster, Repository, Service
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
