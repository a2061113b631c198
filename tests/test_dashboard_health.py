"""Health, sync status and drift on the dashboard: the overview's columns, counts and
filters, the service page's health message and drifted objects, and who may load the
pending diff (Django's test client on the test bed's PostgreSQL; the diff against the real
kube-apiserver: tests/test_dashboard_diff.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from syncworker.dashboard.vocabulary import HEALTH, SYNC
from syncworker.models import Deployment, Repository, Service
from tests import test_dashboard
from tests.test_dashboard import deploy, hx, row_of, text

pytestmark = pytest.mark.django_db
Health, Sync = Service.Health, Service.SyncStatus
staff_client = test_dashboard.staff_client  # the fixture
BROKEN = "Deployment shop/api: 1 of 3 replicas available; ProgressDeadlineExceeded\nmore detail"


@pytest.fixture
def fleet() -> dict[str, Service]:
    """web healthy and synced; api degraded (two-line message) and synced; cache healthy
    but drifted; batch never checked (unknown, unknown)."""
    repo = Repository.objects.create(key="shop", provider="git", url="https://git.example/s.git")
    made = {
        name: Service.objects.create(name=name, repository=repo, k8s_yaml_dir=name)
        for name in ("web", "api", "cache", "batch")
    }
    states = {
        "web": (Health.HEALTHY, "", Sync.SYNCED),
        "api": (Health.DEGRADED, BROKEN, Sync.SYNCED),
        "cache": (Health.HEALTHY, "", Sync.OUT_OF_SYNC),
    }
    for name, (health, message, sync) in states.items():
        Service.objects.filter(pk=made[name].pk).update(
            health=health, health_message=message, sync_status=sync
        )
        deploy(made[name], Deployment.Status.SUCCEEDED)
    return made


def badges(row: str) -> list[str]:
    """The state badges of one row as (tone, key): health, sync, newest deployment."""
    return re.findall(r'<span class="state tone-(\w+) state-([\w-]+)">', row)


def test_each_service_shows_health_and_sync_badges_in_argo_cds_words(
    client: Client, fleet: dict[str, Service]
) -> None:
    html = client.get("/").content.decode()

    api, cache, batch = (row_of(html, n) for n in ("api", "cache", "batch"))
    assert "⚠ Degraded" in text(api) and "✓ Synced" in text(api)
    assert "♥ Healthy" in text(cache) and "↑ OutOfSync" in text(cache)
    assert "? Unknown" in text(batch)
    # Each badge keeps its own tone, whatever the deployment's row shows.
    assert badges(api) == [("bad", "degraded"), ("ok", "synced"), ("ok", "succeeded")]
    assert badges(cache)[1] == ("warn", "out-of-sync")
    # The health message's first line under an unhealthy service, none under a healthy one.
    assert "1 of 3 replicas available; ProgressDeadlineExceeded" in api
    assert "more detail" not in api and "health-line" not in row_of(html, "web")


def test_the_overview_counts_services_per_health_and_sync_status(
    client: Client, fleet: dict[str, Service]
) -> None:
    html = client.get("/?q=a").content.decode()  # api, cache, batch

    def counts(facet: str) -> str:
        start = html.index(f'id="counts-{facet}"')
        return text(html[start : html.index("</ul>", start)])

    # In Argo CD's words, as the badges.
    assert "⚠ 1 Degraded" in counts("health") and "♥ 1 Healthy" in counts("health")
    assert "? 1 Unknown" in counts("health") and "0 Missing" in counts("health")
    assert "↑ 1 OutOfSync" in counts("sync") and "✓ 1 Synced" in counts("sync")
    assert "✓ 2 succeeded" in counts("status") and "○ 1 never deployed" in counts("status")


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("health=degraded", {"api"}),
        ("health=healthy", {"web", "cache"}),
        ("sync=out-of-sync", {"cache"}),
        ("sync=unknown", {"batch"}),
        ("health=healthy&sync=synced", {"web"}),
        ("health=healthy&status=never", set()),
    ],
)
def test_the_overview_filters_by_health_and_sync_status(
    client: Client, fleet: dict[str, Service], query: str, shown: set[str]
) -> None:
    html = client.get(f"/?{query}").content.decode()
    api = client.get(f"/api/overview/?{query}").json()

    assert set(re.findall(r'<a id="service-([\w-]+)"', html)) == shown
    assert {row["name"] for row in api["services"]} == shown


def test_a_count_links_to_its_filter_keeping_the_others_and_a_filtered_facet_can_be_cleared(
    client: Client, fleet: dict[str, Service]
) -> None:
    html = client.get("/?q=a&health=degraded&page=2").content.decode()

    sync = html[html.index('id="counts-sync"') :]
    assert 'href="?q=a&amp;health=degraded&amp;sync=out-of-sync"' in sync
    health = html[html.index('id="counts-health"') : html.index('id="counts-sync"')]
    assert 'href="?q=a&amp;health=healthy"' in health
    assert 'href="?q=a"' in health and "any health" in health
    assert re.search(r'aria-current="true">\s*<span class="icon" aria-hidden="true">⚠', health)


@pytest.mark.parametrize("query", ["health=sick", "sync=maybe"])
def test_a_bad_health_or_sync_filter_is_a_400_naming_the_parameter(
    client: Client, fleet: dict[str, Service], query: str
) -> None:
    parameter = query.split("=")[0]

    page = client.get(f"/?{query}")
    api = client.get(f"/api/overview/?{query}")

    assert page.status_code == 400 and f"Bad filter: {parameter}:" in page.content.decode()
    assert api.status_code == 400 and parameter in api.json()


def test_the_overview_json_carries_health_sync_and_their_counts(
    client: Client, fleet: dict[str, Service]
) -> None:
    checked = timezone.now()
    Service.objects.filter(name="cache").update(drift_checked_at=checked)

    body = client.get("/api/overview/").json()

    rows = {row["name"]: row for row in body["services"]}
    assert (rows["api"]["health"], rows["api"]["health_label"]) == ("degraded", "Degraded")
    assert rows["api"]["health_message"] == BROKEN
    assert (rows["cache"]["sync_status"], rows["cache"]["sync_label"]) == (
        "out-of-sync",
        "OutOfSync",
    )
    assert rows["cache"]["drift_checked_at"].startswith(checked.strftime("%Y-%m-%dT%H:%M"))
    assert body["health_counts"] == {
        "healthy": 2, "progressing": 0, "degraded": 1, "missing": 0, "unknown": 1
    }  # fmt: skip
    assert body["sync_counts"] == {"synced": 2, "out-of-sync": 1, "failed": 0, "unknown": 1}
    assert sum(body["counts"].values()) == 4


def test_every_health_and_sync_status_has_a_word_an_icon_and_a_tone() -> None:
    assert set(HEALTH) == set(Health.values) and set(SYNC) == set(Sync.values)
    tones = {"ok", "bad", "warn", "busy", "idle"}
    assert all(s.label and s.icon and s.tone in tones for s in [*HEALTH.values(), *SYNC.values()])


def test_the_service_page_shows_the_health_message_and_the_drifted_objects_and_fields(
    client: Client, fleet: dict[str, Service]
) -> None:
    Service.objects.filter(name="cache").update(
        drift_checked_at=timezone.now(),
        drift=[
            {"api_version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "cache",
             "state": "changed", "fields": ["data.size", "data.ttl"]},
            {"api_version": "apps/v1", "kind": "Deployment", "namespace": "shop",
             "name": "cache", "state": "missing", "fields": []},
        ],
    )  # fmt: skip

    api = client.get("/services/api/").content.decode()
    cache = client.get("/services/cache/", headers=hx("service-live")).content.decode()

    assert "⚠ Degraded" in text(api) and BROKEN.replace("\n", " ") in text(api)
    assert "Health: ♥ Healthy" in text(
        cache
    ) and "Sync: ↑ OutOfSync drift checked just now" in text(cache)
    assert "Drifted from the last successful deployment: 2 objects" in text(cache)
    assert "ConfigMap shop/cache changed data.size , data.ttl" in text(cache)
    assert "Deployment shop/cache missing (deleted on the cluster)" in text(cache)
    assert "Drifted" not in api and "no drift check yet" in text(api)


def test_only_staff_pages_load_the_pending_diff_and_only_staff_may_fetch_it(
    client: Client, staff_client: Client, fleet: dict[str, Service], settings: Any
) -> None:
    reader = Client()
    reader.force_login(User.objects.create_user("dev", password="pw-dev-123456"))
    url = "/services/web/diff/"

    staff_page = staff_client.get("/services/web/").content.decode()
    reader_page = reader.get("/services/web/").content.decode()

    assert f'hx-get="{url}" hx-trigger="load"' in staff_page
    assert url not in reader_page and "Staff users see here what a sync would change" in reader_page
    assert client.get(url).status_code == 403 and reader.get(url).status_code == 403
    assert staff_client.get("/services/nope/diff/").status_code == 404


def test_the_pending_diff_says_why_there_is_none_without_a_cluster(
    staff_client: Client, fleet: dict[str, Service]
) -> None:
    response = staff_client.get("/services/web/diff/", headers=hx("diff-body"))

    body = text(response.content.decode())
    assert response.status_code == 200
    assert "No diff: web has no cluster and there is no default cluster" in body
    assert "Compare again" in body
