"""Health, sync status, drift and the pending diff in a real headless Chromium against the
live server: the overview's badges keep their own colours, the health filter narrows the
list without a reload, the phone layout does not scroll sideways, and the service page
loads the diff from the real kube-apiserver after it is shown, Secret values masked.
Screenshots under test-artifacts/."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from syncworker.models import Cluster, Deployment, Repository, Service
from tests import test_dashboard_browser as browser_tests
from tests.support.e2e import cm, make_repo
from tests.support.gitserver import WorkingCopy
from tests.test_dashboard_browser import DESKTOP, PHONE, deployment, session_of, shot
from tests.test_diff_service import PASSWORD, secret

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The browser fixtures of the dashboard's browser tests.
browser, base, new_page = browser_tests.browser, browser_tests.base, browser_tests.new_page
Health, Sync = Service.Health, Service.SyncStatus


def test_the_overview_shows_health_and_sync_badges_and_filters_by_health_in_place(
    base: str, new_page: Callable[..., Any]
) -> None:
    repo = Repository.objects.create(
        key="shop", provider="github", owner="acme", name="shop",
        url="https://github.com/acme/shop", last_polled_at=timezone.now(),
    )  # fmt: skip
    states = {
        "web": (Health.HEALTHY, "", Sync.SYNCED),
        "api": (Health.DEGRADED, "Deployment shop/api: 0 of 2 replicas available", Sync.SYNCED),
        "cart": (Health.PROGRESSING, "Deployment shop/cart: 1 of 2 updated", Sync.SYNCED),
        "cache": (Health.MISSING, "Deployment shop/cache: not found", Sync.OUT_OF_SYNC),
    }
    for name, (health, message, sync) in states.items():
        service = Service.objects.create(
            name=name, repository=repo, k8s_yaml_dir=name,
            health=health, health_message=message, sync_status=sync,
        )  # fmt: skip
        deployment(service, Deployment.Status.SUCCEEDED)
    page = new_page()

    page.goto(base + "/")
    api = page.locator("tr.service:has(#service-api)")
    health, sync, status = (api.locator(".state").nth(i) for i in range(3))

    assert health.inner_text().split() == ["⚠", "Degraded"]
    assert "0 of 2 replicas available" in api.inner_text()
    colour = "e => getComputedStyle(e).color"
    # A degraded service whose last deployment succeeded: red health, green sync and status.
    assert health.evaluate(colour) != status.evaluate(colour) == sync.evaluate(colour)
    cache = page.locator("tr.service:has(#service-cache)")
    assert cache.locator(".state").nth(1).inner_text().split() == ["↑", "OutOfSync"]
    shot(page, "dashboard-health-overview")

    page.evaluate("window.sameDocument = true")
    page.select_option("#id_health", "degraded")
    page.locator("#service-web").wait_for(state="detached", timeout=15_000)
    assert page.locator("tr.service").count() == 1 and "health=degraded" in page.url
    assert page.evaluate("window.sameDocument") is True
    page.locator("#counts-sync a", has_text="OutOfSync").click()
    page.wait_for_url("**sync=out-of-sync**")
    assert page.locator("tr.service").count() == 0, "degraded and out-of-sync: none"

    phone = new_page(PHONE)
    phone.goto(base + "/")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at phone width ({width}px)"
    shot(phone, "dashboard-health-overview-phone")


@pytest.mark.kube
def test_the_service_page_shows_drift_and_loads_the_pending_diff_after_it_is_shown(
    base: str,
    new_page: Callable[..., Any],
    cluster: Cluster,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    git_repo.commit(
        {"deploy/app/a.yaml": cm("alpha", ns, "one"), "deploy/app/s.yaml": secret(ns, PASSWORD)}
    )
    _, (service,) = make_repo(git_repo, "app")
    Service.objects.filter(pk=service.pk).update(
        health=Health.HEALTHY,
        sync_status=Sync.OUT_OF_SYNC,
        drift_checked_at=timezone.now(),
        drift=[{"api_version": "v1", "kind": "ConfigMap", "namespace": ns, "name": "alpha",
                "state": "changed", "fields": ["data.value"]}],
    )  # fmt: skip
    admin = User.objects.create_user("admin", password="pw-admin-1234", is_staff=True)
    page = new_page(DESKTOP, session=session_of(admin))

    page.goto(base + "/services/app/")

    live = page.locator("#service-live")
    badges = live.locator("#health-sync .state")
    assert [b.split() for b in badges.all_inner_texts()] == [["♥", "Healthy"], ["↑", "OutOfSync"]]
    assert f"ConfigMap {ns}/alpha" in live.locator("table.drift").inner_text()
    assert "data.value" in live.locator("table.drift").inner_text()
    diff = page.locator("#diff-body")
    diff.get_by_text(f"created ConfigMap {ns}/alpha").wait_for(timeout=30_000)
    assert "A sync would change 2 objects" in diff.inner_text()
    assert "+  value: one" in diff.inner_text()
    shown = page.content()
    assert PASSWORD not in shown and base64.b64encode(PASSWORD.encode()).decode() not in shown
    colour = "e => getComputedStyle(e).color"
    added = diff.locator("pre.diff .add").first
    assert added.inner_text().startswith("+")
    assert added.evaluate(colour) != diff.locator("pre.diff").first.evaluate(colour)
    shot(page, "dashboard-service-diff")

    page.evaluate("window.sameDocument = true")
    diff.get_by_role("button", name="Compare again").click()
    diff.get_by_text(f"created ConfigMap {ns}/alpha").wait_for(timeout=30_000)
    assert page.evaluate("window.sameDocument") is True

    phone = new_page(PHONE, session=session_of(admin))
    phone.goto(base + "/services/app/")
    phone.locator("#diff-body").get_by_text("created ConfigMap").first.wait_for(timeout=30_000)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at phone width ({width}px)"
    shot(phone, "dashboard-service-diff-phone")
