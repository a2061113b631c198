"""The dashboard in a real headless Chromium against the live server: what a person sees
(states of succeeded, failed and running services; no buttons for non-staff), what the
keyboard reaches, the pages updating by themselves, and a staff user's "Sync now" and
"Roll back to this" carried out by a real Celery worker process against a real Git
server. Screenshots (desktop and phone width) are saved under test-artifacts/."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from syncworker.models import Cluster, Deployment, Repository, Service
from tests.support.gitserver import WorkingCopy
from tests.test_admin_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Status = Deployment.Status
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "browser-pass-123"


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls between
    # browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def base(live_server: Any) -> str:
    return str(live_server.url)


@pytest.fixture
def new_page(browser: Any, base: str) -> Iterator[Callable[..., Any]]:
    """Pages in contexts of their own: a viewport, and a session cookie if given."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP, session: str = "") -> Any:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        if session:
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def deployment(service: Service, status: str, error: str = "") -> Deployment:
    now = timezone.now()
    final = status in Deployment.FINAL_STATES
    return Deployment.objects.create(
        service=service,
        commit_sha=f"{service.pk:04x}" + "c0ffee" * 6,
        status=status,
        error=error,
        bundle_digest="b" * 64 if status == Status.SUCCEEDED else "",
        object_count=3,
        queued_at=now - timedelta(minutes=4),
        started_at=now - timedelta(minutes=3),
        finished_at=now - timedelta(minutes=2) if final else None,
    )


def session_of(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_the_overview_shows_succeeded_failed_and_running_services_and_follows_them(
    base: str, new_page: Callable[..., Any]
) -> None:
    repo = Repository.objects.create(
        key="platform", provider="github", owner="acme", name="platform",
        url="https://github.com/acme/platform", last_polled_at=timezone.now(),
    )  # fmt: skip
    made = {
        name: Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"apps/{name}")
        for name in ("web", "api", "worker")
    }
    deployment(made["web"], Status.SUCCEEDED)
    failed = deployment(made["api"], Status.FAILED, "apply failed: Deployment api: replicas: -1")
    Deployment.objects.filter(pk=failed.pk).update(reason=Deployment.Reason.APPLY)
    running = deployment(made["worker"], Status.APPLYING)
    page = new_page()

    page.goto(base + "/")
    rows = {name: page.locator(f"tr.service:has(#service-{name})") for name in made}

    assert "Succeeded" in rows["web"].inner_text()
    assert "Failed" in rows["api"].inner_text()
    assert "replicas: -1" in rows["api"].inner_text()
    assert "Rejected by the cluster" in rows["api"].inner_text()
    assert "Applying" in rows["worker"].inner_text()
    # The failed row stands out by more than its colour: its word and icon are its own.
    last = {n: r.locator('td[data-label="Last deployment"] .state') for n, r in rows.items()}
    assert last["api"].inner_text().split() == ["✗", "Failed"]
    colours = {n: b.evaluate("e => getComputedStyle(e).color") for n, b in last.items()}
    assert len(set(colours.values())) == 3, colours
    shot(page, "dashboard-overview")

    page.evaluate("window.sameDocument = true")
    Deployment.objects.filter(pk=running.pk).update(
        status=Status.SUCCEEDED, finished_at=timezone.now()
    )
    rows["worker"].locator("text=Succeeded").wait_for(timeout=15_000)
    assert page.evaluate("window.sameDocument") is True

    page.fill("#id_q", "wor")  # the search filters as one types, without a reload
    page.locator("#service-api").wait_for(state="detached", timeout=15_000)
    assert page.locator("tr.service").count() == 1 and "?q=wor" in page.url
    assert page.evaluate("window.sameDocument") is True
    page.goto(base + "/")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "service-api":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/services/api/")
    assert "replicas: -1" in page.locator("#service-live").inner_text()

    phone = new_page(PHONE)
    phone.goto(base + "/")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at phone width ({width}px)"
    shot(phone, "dashboard-overview-phone")
    phone.goto(base + "/services/api/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(phone, "dashboard-service-phone")


def test_a_staff_sync_now_shows_the_new_deployment_without_a_reload_and_rollback_confirms(
    base: str,
    new_page: Callable[..., Any],
    celery_worker_process: object,
    git_repo: WorkingCopy,
    tmp_path: Path,
) -> None:
    def configmap(value: str) -> dict[str, str | bytes | None]:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web"},
            "data": {"v": value},
        }
        return {"deploy/web/cm.yaml": yaml.safe_dump(body)}

    git_repo.commit(configmap("1"))
    out = tmp_path / "out"
    Cluster.objects.create(
        name="laptop",
        applyer="file",
        is_default=True,
        settings={"directory": str(out)},
    )
    repo = Repository.objects.create(key="browser", provider="git", url=git_repo.url)
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="deploy/web")
    User.objects.create_superuser("admin", "", PASSWORD)
    page = new_page()

    page.goto(base + "/admin/login/?next=/services/web/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(base + "/services/web/")
    assert "No deployments yet." in page.locator("#service-live").inner_text()
    page.evaluate("window.sameDocument = true")

    page.get_by_role("button", name="Sync now").click()
    page.locator("#action-message").get_by_text("Sync of browser queued").wait_for()
    first = page.locator("#service-live tbody.deployment").first
    first.get_by_text("Succeeded").wait_for(timeout=60_000)

    assert page.evaluate("window.sameDocument") is True
    deployed = service.deployments.get()
    assert (deployed.status, deployed.trigger) == (Status.SUCCEEDED, Deployment.Trigger.MANUAL)
    assert first.get_attribute("id") == f"deployment-{deployed.pk}"
    page.locator("#service-inventory").get_by_text("ConfigMap").wait_for(timeout=20_000)

    git_repo.commit(configmap("2"))
    page.get_by_role("button", name="Sync now").click()
    page.locator("#service-live tbody.deployment").nth(1).wait_for(timeout=60_000)
    page.locator("#service-live tbody.deployment").first.get_by_text("Succeeded").wait_for(
        timeout=60_000
    )
    assert page.evaluate("window.sameDocument") is True
    shot(page, "dashboard-service")

    page.locator(f"#deployment-{deployed.pk}").get_by_role("link", name="Roll back to this").click()
    page.wait_for_url(f"{base}/services/web/deployments/{deployed.pk}/rollback/")
    assert not Deployment.objects.filter(trigger=Deployment.Trigger.ROLLBACK).exists()
    shot(page, "dashboard-rollback-confirm")
    page.get_by_role("button", name=f"Roll back to #{deployed.pk}").click()
    page.wait_for_url(base + "/services/web/")
    rollback = Deployment.objects.get(trigger=Deployment.Trigger.ROLLBACK)
    page.locator(f"#deployment-{rollback.pk}").get_by_text("Succeeded").wait_for(timeout=60_000)
    assert f"rollback of #{deployed.pk}" in page.locator(f"#deployment-{rollback.pk}").inner_text()
    assert "v: '1'" in (out / "web.yaml").read_text()


def test_a_non_staff_user_sees_no_buttons_and_a_forged_post_is_refused(
    base: str, new_page: Callable[..., Any], celery_worker_process: object
) -> None:
    repo = Repository.objects.create(key="infra", provider="git", url="http://127.0.0.1:9/x.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="d")
    target = deployment(service, Status.SUCCEEDED)
    page = new_page(session=session_of(User.objects.create_user("dev", password=PASSWORD)))

    page.goto(base + "/services/web/")
    overview_buttons = page.locator("button, .button").all_inner_texts()
    assert "dev (read only)" in page.locator("header").inner_text()
    page.goto(base + "/")
    overview_buttons += page.locator("button, .button").all_inner_texts()
    assert sorted(overview_buttons) == ["Filter", "Log out", "Log out"], overview_buttons

    forged = page.evaluate(
        """async (urls) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const answers = [];
            for (const url of urls) {
                const r = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token}});
                answers.push(r.status);
            }
            return answers;
        }""",
        [
            "/services/web/sync/",
            "/services/web/redeploy/",
            "/repositories/infra/sync/",
            f"/services/web/deployments/{target.pk}/rollback/",
        ],
    )

    assert forged == [403, 403, 403, 403]
    time.sleep(2)  # a poll the worker had been sent would have been recorded by now
    repo.refresh_from_db()
    assert repo.last_polled_at is None
    assert list(Deployment.objects.values_list("pk", flat=True)) == [target.pk]
