"""The admin in a real headless Chromium: log in, add a repository and a service, press
"sync now", and watch the deployment appear in the history (a real Celery worker
process does the work). A screenshot of the history is saved under test-artifacts/."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User

from syncworker.models import Cluster, Deployment, Repository
from tests.support.gitserver import WorkingCopy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background fetches to Google's hosts.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ghp_typed_in_the_browser"


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test
    # makes between browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_admin_adds_a_repository_and_a_service_and_syncs_it(
    page: object,
    live_server: object,
    celery_worker_process: object,
    git_repo: WorkingCopy,
    tmp_path: Path,
) -> None:
    p = page  # playwright Page
    base = live_server.url  # type: ignore[attr-defined]
    git_repo.commit(
        {
            "deploy/web/cm.yaml": yaml.safe_dump(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
            )
        }
    )
    Cluster.objects.create(
        name="laptop",
        applyer="file",
        is_default=True,
        settings={"directory": str(tmp_path / "out")},
    )
    User.objects.create_superuser("admin", "", "browser-pass-123")

    p.goto(f"{base}/admin/login/")  # type: ignore[attr-defined]
    p.fill("#id_username", "admin")  # type: ignore[attr-defined]
    p.fill("#id_password", "browser-pass-123")  # type: ignore[attr-defined]
    p.click("input[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_selector("#site-name")  # type: ignore[attr-defined]

    p.goto(f"{base}/admin/syncworker/repository/add/")  # type: ignore[attr-defined]
    p.fill("#id_key", "browser")  # type: ignore[attr-defined]
    p.select_option("#id_provider", "git")  # type: ignore[attr-defined]
    p.fill("#id_url", git_repo.url)  # type: ignore[attr-defined]
    p.fill("#id_token", TOKEN)  # type: ignore[attr-defined]
    p.click("input[name=_save]")  # type: ignore[attr-defined]
    p.wait_for_selector(".messagelist .success")  # type: ignore[attr-defined]
    repo = Repository.objects.get(key="browser")
    assert repo.token == TOKEN

    p.goto(f"{base}/admin/syncworker/repository/{repo.pk}/change/")  # type: ignore[attr-defined]
    assert TOKEN not in p.content()  # type: ignore[attr-defined]

    p.goto(f"{base}/admin/syncworker/service/add/")  # type: ignore[attr-defined]
    p.fill("#id_name", "web")  # type: ignore[attr-defined]
    p.select_option("#id_repository", str(repo.pk))  # type: ignore[attr-defined]
    p.fill("#id_k8s_yaml_dir", "deploy/web")  # type: ignore[attr-defined]
    p.click("input[name=_save]")  # type: ignore[attr-defined]
    p.wait_for_selector(".messagelist .success")  # type: ignore[attr-defined]

    p.goto(f"{base}/admin/syncworker/repository/")  # type: ignore[attr-defined]
    p.check(f"input.action-select[value='{repo.pk}']")  # type: ignore[attr-defined]
    p.select_option("select[name=action]", "sync_now")  # type: ignore[attr-defined]
    p.click("button[name=index]")  # type: ignore[attr-defined]
    p.wait_for_selector(".messagelist .success")  # type: ignore[attr-defined]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p.goto(f"{base}/admin/syncworker/deployment/")  # type: ignore[attr-defined]
        if p.query_selector("#result_list .status-succeeded"):  # type: ignore[attr-defined]
            break
        time.sleep(0.5)
    SCREENSHOTS.mkdir(exist_ok=True)
    p.screenshot(path=str(SCREENSHOTS / "admin-deployment-history.png"), full_page=True)  # type: ignore[attr-defined]

    row = p.inner_text("#result_list tbody tr")  # type: ignore[attr-defined]
    assert "web" in row and "succeeded" in row, row
    assert Deployment.objects.get().status == Deployment.Status.SUCCEEDED
    assert (tmp_path / "out" / "web.yaml").exists()
