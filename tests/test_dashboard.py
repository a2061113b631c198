"""The dashboard's pages, fragments, buttons and JSON, through Django's test client on
the test bed's PostgreSQL (browser behaviour: tests/test_dashboard_browser.py)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from syncworker.dashboard.presenting import can_roll_back, commit_url, repository_web_url
from syncworker.dashboard.vocabulary import STATES, first_line
from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service
from syncworker.pipeline import actions
from syncworker.selectors import OVERVIEW_STATUSES

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "syncworker" / "dashboard"
Status = Deployment.Status


def hx(target: str = "", **extra: str) -> dict[str, str]:
    """The headers htmx sends: HX-Request, and HX-Target when it swaps into an id."""
    headers = {"HX-Request": "true", **{k.replace("_", "-"): v for k, v in extra.items()}}
    return {**headers, "HX-Target": target} if target else headers


def deploy(
    service: Service, status: str, *, error: str = "", digest: str = "d" * 64, **fields: Any
) -> Deployment:
    now = timezone.now()
    final = status in Deployment.FINAL_STATES
    return Deployment.objects.create(
        service=service,
        commit_sha=f"{service.pk:08x}" + "a" * 32,
        tree_sha="t" * 40,
        status=status,
        error=error,
        bundle="kind: ConfigMap\n" if digest else "",
        bundle_digest=digest if status != Status.QUEUED else "",
        object_count=2,
        queued_at=now - timedelta(seconds=30),
        started_at=now - timedelta(seconds=20) if status != Status.QUEUED else None,
        finished_at=now - timedelta(seconds=5) if final else None,
        **fields,
    )


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="infra",
        provider="github",
        owner="acme",
        name="infra",
        url="https://github.com/acme/infra",
    )


@pytest.fixture
def services(repo: Repository) -> dict[str, Service]:
    """web succeeded, api failed (two-line error), worker applying, batch never deployed."""
    made = {
        name: Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"deploy/{name}")
        for name in ("web", "api", "worker", "batch")
    }
    deploy(made["web"], Status.SUCCEEDED)
    deploy(made["api"], Status.SUCCEEDED)
    deploy(
        made["api"],
        Status.FAILED,
        error="apply failed: ConfigMap api: bad\nsecond line",
        reason=Deployment.Reason.APPLY,
        warnings=["api/notes.yaml document 1: not a Kubernetes object (no kind), skipped"],
    )
    deploy(made["worker"], Status.APPLYING)
    return made


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("ops", password="pw-ops-123456", is_staff=True))
    return client


@pytest.fixture
def reader_client() -> Client:
    """A logged-in user who is not staff, with CSRF checks on as in a browser."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("dev", password="pw-dev-123456"))
    return client


def text(html: str) -> str:
    """What a reader sees: the markup without tags, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row_of(html: str, name: str) -> str:
    match = re.search(
        rf'<tr class="service[^"]*">\s*<th[^>]*>\s*<a id="service-{name}".*?</tr>', html, re.S
    )
    assert match, f"no row for {name}"
    return match.group(0)


def test_the_site_root_shows_each_service_with_the_state_of_its_newest_deployment(
    client: Client, services: dict[str, Service]
) -> None:
    html = client.get("/").content.decode()

    assert "✓ Succeeded" in text(row_of(html, "web")) and "tone-ok" in row_of(html, "web")
    failed = row_of(html, "api")
    assert "tone-bad" in failed and "✗ Failed Rejected by the cluster" in text(failed)
    assert "apply failed: ConfigMap api: bad" in failed and "second line" not in failed
    assert "↻ Applying" in text(row_of(html, "worker")) and "tone-busy" in row_of(html, "worker")
    assert "○ Never deployed" in text(row_of(html, "batch"))
    start = html.index('class="counts"')
    counts = text(html[start : html.index("</ul>", start)])
    assert "✗ 1 failed" in counts and "○ 1 never deployed" in counts and "✓ 1 succeeded" in counts


def test_the_commit_links_to_its_page_on_the_git_host(
    client: Client, services: dict[str, Service]
) -> None:
    sha = services["web"].deployments.get().commit_sha

    html = row_of(client.get("/").content.decode(), "web")

    assert f'href="https://github.com/acme/infra/commit/{sha}"' in html
    assert f">{sha[:12]}</a>" in html


def test_the_repository_link_keeps_an_http_hosts_scheme_and_port_and_drops_credentials() -> None:
    local = Repository(key="r", provider="git", url="http://bot:tok@127.0.0.1:9418/infra.git")
    unknown_ssh = Repository(key="r", provider="git", url="git@git.corp.example:acme/infra.git")

    assert repository_web_url(local) == "http://127.0.0.1:9418/infra"
    assert repository_web_url(unknown_ssh) == ""


@pytest.mark.parametrize(
    ("provider", "url", "expected"),
    [
        ("github", "https://github.com/acme/infra.git", "https://github.com/acme/infra/commit/C"),
        ("git", "git@gitlab.com:acme/infra.git", "https://gitlab.com/acme/infra/-/commit/C"),
        (
            "git",
            "https://bot:s3cret@bitbucket.org/acme/infra",
            "https://bitbucket.org/acme/infra/commits/C",
        ),
        (
            "git",
            "ssh://git@codeberg.org/acme/infra.git",
            "https://codeberg.org/acme/infra/commit/C",
        ),
        (
            "github",
            "https://git.corp.example/acme/infra",
            "https://git.corp.example/acme/infra/commit/C",
        ),
        ("git", "http://127.0.0.1:9418/infra.git", ""),
        ("git", "file:///srv/git/infra.git", ""),
    ],
)
def test_commit_links_only_for_hosts_whose_layout_is_known_and_never_with_credentials(
    provider: str, url: str, expected: str
) -> None:
    repo = Repository(key="r", provider=provider, owner="acme", name="infra", url=url)

    assert commit_url(repo, "C") == expected
    assert "s3cret" not in repository_web_url(repo)


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("status=failed", {"api"}),
        ("status=never", {"batch", "lone"}),
        ("status=applying", {"worker"}),
        ("q=WOR", {"worker"}),
        ("repository=other", {"lone"}),
        ("cluster=edge", {"lone"}),
        ("repository=infra&status=succeeded", {"web"}),
    ],
)
def test_the_overview_filters_by_status_repository_cluster_and_name(
    client: Client, services: dict[str, Service], query: str, shown: set[str]
) -> None:
    other = Repository.objects.create(key="other", provider="git", url="https://git.example/o.git")
    edge = Cluster.objects.create(name="edge")
    Service.objects.create(name="lone", repository=other, k8s_yaml_dir="x", cluster=edge)

    html = client.get(f"/?{query}").content.decode()

    assert set(re.findall(r'<a id="service-([\w-]+)"', html)) == shown


def test_a_service_without_a_cluster_shows_and_filters_as_the_default_cluster(
    client: Client, services: dict[str, Service]
) -> None:
    Cluster.objects.create(name="kwok", is_default=True)
    Cluster.objects.create(name="edge")
    Service.objects.filter(name="batch").update(cluster=Cluster.objects.get(name="edge"))

    html = client.get("/").content.decode()
    on_default = client.get("/?cluster=kwok").content.decode()
    rows = {r["name"]: r["cluster"] for r in client.get("/api/overview/").json()["services"]}
    detail = client.get("/api/overview/services/web/").json()["service"]

    assert text(row_of(html, "web")).endswith("kwok")
    assert text(row_of(html, "batch")).endswith("edge")
    assert set(re.findall(r'<a id="service-([\w-]+)"', on_default)) == {"web", "api", "worker"}
    assert rows == {"web": "kwok", "api": "kwok", "worker": "kwok", "batch": "edge"}
    assert detail["cluster"] == "kwok"
    assert "<dt>Cluster</dt><dd>kwok" in client.get("/services/web/").content.decode()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("status=bogus", "status"), ("repository=nope", "repository"), ("cluster=nope", "cluster")],
)
def test_a_bad_filter_is_a_400_naming_the_parameter(
    client: Client, services: dict[str, Service], query: str, parameter: str
) -> None:
    response = client.get(f"/?{query}")
    api = client.get(f"/api/overview/?{query}")

    assert response.status_code == 400
    assert f"Bad filter: {parameter}:" in response.content.decode()
    assert api.status_code == 400 and parameter in api.json()


def test_disabled_services_and_repositories_are_not_on_the_overview(
    client: Client, services: dict[str, Service]
) -> None:
    Service.objects.filter(name="web").update(enabled=False)
    hidden = Repository.objects.create(key="off", provider="git", url="x", enabled=False)
    Service.objects.create(name="ghost", repository=hidden, k8s_yaml_dir="g")

    html = client.get("/").content.decode()

    assert 'id="service-api"' in html
    assert 'id="service-web"' not in html and 'id="service-ghost"' not in html


def test_failing_polls_of_a_repository_are_shown_above_the_services(
    client: Client, services: dict[str, Service], repo: Repository
) -> None:
    Repository.objects.filter(pk=repo.pk).update(
        consecutive_failures=3, last_error="ls-remote: connection refused"
    )

    html = client.get("/").content.decode()

    assert "Polling fails" in html
    assert "3 failed polls in a row" in html and "ls-remote: connection refused" in html


def bulk_services(count: int, repositories: int = 10) -> None:
    repos = Repository.objects.bulk_create(
        Repository(key=f"bulk-{i}", provider="git", url=f"https://git.example/{i}.git")
        for i in range(repositories)
    )
    cluster = Cluster.objects.create(name="bulk")
    created = Service.objects.bulk_create(
        Service(
            name=f"svc-{i:04d}",
            repository=repos[i % repositories],
            k8s_yaml_dir="d",
            cluster=cluster,
            health=Service.Health.values[i % 5],
            health_message="Deployment d/x: 0 of 1 replicas available" if i % 5 else "",
            sync_status=Service.SyncStatus.values[i % 4],
        )
        for i in range(count)
    )
    now = timezone.now()
    statuses = [Status.SUCCEEDED, Status.FAILED, Status.APPLYING, Status.QUEUED]
    Deployment.objects.bulk_create(
        Deployment(
            service=s,
            commit_sha=f"{n:040x}",
            status=statuses[n % 4],
            error="boom" if n % 4 == 1 else "",
            queued_at=now,
        )
        for n, s in enumerate(created)
        for _ in range(2)
    )


def queries(client: Client, url: str, headers: dict[str, str] | None = None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("who", ["anonymous", "staff"])
def test_the_overview_costs_the_same_few_queries_at_10_and_1000_services(
    client: Client, staff_client: Client, who: str
) -> None:
    reader = staff_client if who == "staff" else client
    bulk_services(10)
    urls = ("/", "/?status=failed", "/?health=progressing&sync=out-of-sync", "/api/overview/")
    small = {url: queries(reader, url) for url in urls}
    small["fragment"] = queries(reader, "/", headers=hx("services-live"))
    Service.objects.all().delete()
    Repository.objects.all().delete()
    Cluster.objects.all().delete()
    bulk_services(1000)
    large = {url: queries(reader, url) for url in urls}
    large["fragment"] = queries(reader, "/", headers=hx("services-live"))

    assert large == small
    assert max(large.values()) <= (9 if who == "staff" else 7), large


def test_the_service_page_costs_the_same_few_queries_at_10_and_1000_deployments(
    client: Client, repo: Repository
) -> None:
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="d")
    cluster = Cluster.objects.create(name="c")

    def fill(n: int) -> dict[str, int]:
        Deployment.objects.bulk_create(
            Deployment(service=service, commit_sha=f"{i:040x}", status=Status.SUCCEEDED)
            for i in range(n)
        )
        AppliedObject.objects.bulk_create(
            AppliedObject(
                service=service, cluster=cluster, api_version="v1", kind="ConfigMap", name=f"cm-{i}"
            )
            for i in range(AppliedObject.objects.count(), n)
        )
        return {
            "page": queries(client, "/services/web/"),
            "page 2": queries(client, "/services/web/?page=2"),
            "live": queries(client, "/services/web/", headers=hx("service-live")),
            "json": queries(client, "/api/overview/services/web/"),
        }

    small = fill(30)
    large = fill(1000)

    assert large == small
    assert max(large.values()) <= 6, large


def test_a_poll_gets_only_its_live_region_and_a_history_restore_the_whole_page(
    client: Client, services: dict[str, Service]
) -> None:
    poll = client.get("/", headers=hx("services-live"))
    restore = client.get("/", headers=hx("services-live", HX_History_Restore_Request="true"))
    live = client.get("/services/api/", headers=hx("service-live")).content.decode()
    inventory = client.get("/services/api/", headers=hx("service-inventory"))

    body = poll.content.decode()
    assert body.lstrip().startswith('<section id="services-live"') and "<html" not in body
    assert 'hx-trigger="every 5s' in body
    assert "HX-Request" in poll["Vary"] and "HX-Target" in poll["Vary"]
    assert "<html" in restore.content.decode()
    assert live.lstrip().startswith('<section id="service-live"') and "History" in live
    assert inventory.content.decode().lstrip().startswith('<section id="service-inventory"')


def test_a_service_page_polls_quickly_only_while_a_deployment_is_under_way(
    client: Client, services: dict[str, Service]
) -> None:
    assert 'hx-trigger="every 2s' in client.get("/services/worker/").content.decode()
    assert 'hx-trigger="every 10s' in client.get("/services/web/").content.decode()


def test_the_service_page_shows_history_timings_error_in_full_pruned_objects_and_inventory(
    client: Client, services: dict[str, Service]
) -> None:
    api = services["api"]
    failed = api.deployments.get(status=Status.FAILED)
    ok = api.deployments.get(status=Status.SUCCEEDED)
    Deployment.objects.filter(pk=ok.pk).update(
        pruned_objects=[
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "prod", "name": "old"}
        ]
    )
    cluster = Cluster.objects.create(name="prod-eu")
    AppliedObject.objects.create(
        service=api,
        cluster=cluster,
        api_version="apps/v1",
        kind="Deployment",
        namespace="prod",
        name="api",
    )

    html = client.get("/services/api/").content.decode()

    assert f'id="deployment-{failed.pk}"' in html and f'id="deployment-{ok.pk}"' in html
    assert "apply failed: ConfigMap api: bad\nsecond line" in html
    assert "waited 10.0 s, took 15.0 s" in html
    assert "2 applied, 1 pruned" in html and "ConfigMap prod/old" in html
    assert "Rejected by the cluster" in html
    assert "Warnings api/notes.yaml document 1: not a Kubernetes object" in text(html)
    inventory = html[html.index('id="service-inventory"') :]
    assert "Deployment" in inventory and "prod-eu" in inventory and "apps/v1" in inventory


def test_an_unknown_service_is_a_404(client: Client) -> None:
    assert client.get("/services/nope/").status_code == 404
    response = client.get("/api/overview/services/nope/")
    assert response.status_code == 404 and response.json() == {"detail": "unknown service 'nope'"}


BUTTONS = ("Sync now", "Redeploy", "Roll back to this")


def test_only_staff_see_the_buttons(
    client: Client, reader_client: Client, staff_client: Client, services: dict[str, Service]
) -> None:
    for reader in (client, reader_client):
        page = reader.get("/services/api/").content.decode() + reader.get("/").content.decode()
        assert not any(button in page for button in BUTTONS)
    page = staff_client.get("/services/api/").content.decode()
    assert all(button in page for button in BUTTONS)
    assert 'name="csrfmiddlewaretoken"' in page
    assert "Sync now" in staff_client.get("/").content.decode()


def csrf_token(client: Client) -> str:
    client.get("/services/web/")
    return client.cookies["csrftoken"].value


def test_a_forged_post_from_a_non_staff_user_is_refused_and_queues_nothing(
    reader_client: Client,
    services: dict[str, Service],
    django_capture_on_commit_callbacks: Any,
) -> None:
    target = services["web"].deployments.get()
    token = csrf_token(reader_client)
    urls = [
        "/services/web/sync/",
        "/services/web/redeploy/",
        "/repositories/infra/sync/",
        f"/services/web/deployments/{target.pk}/rollback/",
    ]
    before = Deployment.objects.count()

    with django_capture_on_commit_callbacks() as callbacks:
        answers = [reader_client.post(url, HTTP_X_CSRFTOKEN=token).status_code for url in urls]
        confirm_page = reader_client.get(urls[-1]).status_code

    assert answers == [403, 403, 403, 403] and confirm_page == 403
    assert callbacks == [] and Deployment.objects.count() == before


def test_an_anonymous_post_is_refused(client: Client, services: dict[str, Service]) -> None:
    assert client.post("/services/web/sync/").status_code == 403


def test_staff_buttons_call_the_same_actions_as_the_admin_and_the_api(
    staff_client: Client, services: dict[str, Service], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as sync:
        button = staff_client.post("/services/web/sync/", headers=hx())
    with django_capture_on_commit_callbacks() as redeploy:
        form = staff_client.post("/services/web/redeploy/", follow=True)

    assert button.status_code == 202 and len(sync) == 1
    assert json.loads(button["HX-Trigger"]) == {"gitops:changed": {}}
    assert "Sync of infra queued" in button.content.decode()
    assert len(redeploy) == 1
    assert form.redirect_chain == [("/services/web/", 302)]
    assert "Redeploy of web at the head of main queued." in form.content.decode()


def test_an_action_that_does_not_apply_says_why_instead_of_failing(
    staff_client: Client, services: dict[str, Service], repo: Repository
) -> None:
    Repository.objects.filter(pk=repo.pk).update(enabled=False)

    response = staff_client.post("/services/web/sync/", headers=hx())

    assert response.status_code == 409
    assert "repository infra is disabled" in response.content.decode()
    assert "HX-Trigger" not in response


def test_the_newest_deployment_has_no_rollback_button_since_it_is_what_runs(
    staff_client: Client, services: dict[str, Service]
) -> None:
    web = services["web"].deployments.get()
    older = services["api"].deployments.get(status=Status.SUCCEEDED)

    assert (
        f"/deployments/{web.pk}/rollback/"
        not in staff_client.get("/services/web/").content.decode()
    )
    assert (
        f"/deployments/{older.pk}/rollback/" in staff_client.get("/services/api/").content.decode()
    )


def test_rollback_asks_for_confirmation_then_re_applies_the_bundle(
    staff_client: Client, services: dict[str, Service]
) -> None:
    target = services["web"].deployments.get()
    url = f"/services/web/deployments/{target.pk}/rollback/"

    confirm = staff_client.get(url).content.decode()
    assert Deployment.objects.filter(rollback_of=target).count() == 0
    done = staff_client.post(url, follow=True)

    assert f"Roll back web to deployment #{target.pk}?" in confirm and 'method="post"' in confirm
    created = Deployment.objects.get(rollback_of=target)
    assert (created.trigger, created.bundle_digest) == (
        Deployment.Trigger.ROLLBACK,
        target.bundle_digest,
    )
    assert f"Rollback queued as deployment #{created.pk}" in done.content.decode()


def test_rollback_to_a_failed_deployment_or_another_services_is_refused(
    staff_client: Client, services: dict[str, Service]
) -> None:
    failed = services["api"].deployments.get(status=Status.FAILED)
    other = services["web"].deployments.get()

    page = staff_client.get(f"/services/api/deployments/{failed.pk}/rollback/")
    post = staff_client.post(f"/services/api/deployments/{failed.pk}/rollback/", headers=hx())
    wrong_service = staff_client.post(f"/services/api/deployments/{other.pk}/rollback/")

    assert page.status_code == 409 and "cannot be restored" in page.content.decode()
    assert post.status_code == 409 and "did not succeed" in post.content.decode()
    assert wrong_service.status_code == 404
    assert not Deployment.objects.filter(trigger=Deployment.Trigger.ROLLBACK).exists()


@pytest.mark.parametrize("status", Status.values)
@pytest.mark.parametrize("digest", ["", "d" * 64])
def test_the_rollback_button_shows_exactly_when_the_rollback_action_accepts(
    services: dict[str, Service], status: str, digest: str
) -> None:
    target = deploy(services["batch"], status, digest=digest)
    try:
        actions.rollback(target)
        accepted = True
    except actions.ActionError:
        accepted = False

    assert can_roll_back(target) == accepted


def test_a_private_dashboard_sends_anonymous_readers_to_log_in_and_refuses_non_staff(
    client: Client,
    reader_client: Client,
    staff_client: Client,
    services: dict[str, Service],
    settings: Any,
) -> None:
    settings.GITOPS = {**settings.GITOPS, "STATUS_API_PUBLIC": False}

    page = client.get("/services/web/")
    fragment = client.get("/", headers=hx("services-live", HX_Current_URL="http://testserver/?q=w"))

    assert (page.status_code, page["Location"]) == (302, "/admin/login/?next=/services/web/")
    assert fragment["HX-Redirect"] == "/admin/login/?next=/%3Fq%3Dw"
    assert client.get("/api/overview/").status_code in (401, 403)
    assert reader_client.get("/").status_code == 403
    assert reader_client.get("/api/overview/").status_code == 403
    assert staff_client.get("/").status_code == 200
    assert staff_client.get("/api/overview/").status_code == 200


def test_a_public_dashboard_is_readable_without_login(
    client: Client, services: dict[str, Service]
) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/api/overview/").status_code == 200


def test_the_overview_json_has_the_rows_and_counts_of_the_first_page(
    client: Client, services: dict[str, Service]
) -> None:
    body = client.get("/api/overview/").json()

    rows = {row["name"]: row for row in body["services"]}
    assert body["count"] == 4 and set(rows) == {"web", "api", "worker", "batch"}
    assert body["counts"]["failed"] == 1 and body["counts"]["never"] == 1
    assert (
        rows["api"]["state"] == "failed"
        and rows["api"]["error_line"] == "apply failed: ConfigMap api: bad"
    )
    assert rows["api"]["last_deployment"]["status"] == "failed"
    assert rows["api"]["last_deployment"]["reason"] == "apply"
    assert rows["api"]["reason_label"] == "Rejected by the cluster"
    assert rows["batch"]["last_deployment"] is None
    assert "bundle" not in rows["web"]["last_deployment"]


def test_the_service_json_limits_its_history_and_checks_the_limit(
    client: Client, services: dict[str, Service]
) -> None:
    one = client.get("/api/overview/services/api/?limit=1").json()
    bad = client.get("/api/overview/services/api/?limit=0")

    assert [d["status"] for d in one["deployments"]] == ["failed"]
    assert one["repository"]["key"] == "infra" and "token" not in one["repository"]
    assert bad.status_code == 400 and "limit" in bad.json()


def test_a_deployment_of_another_service_is_not_found_under_this_one(
    client: Client, services: dict[str, Service]
) -> None:
    web = services["web"].deployments.get()

    assert client.get(f"/api/overview/services/web/deployments/{web.pk}/").json()["id"] == web.pk
    assert client.get(f"/api/overview/services/api/deployments/{web.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("error", "line"),
    [
        ("apply failed: boom\ndetails", "apply failed: boom"),
        (
            "invalid bundle:\n  a.yaml document 2: no apiVersion\nb.yaml",
            "invalid bundle: a.yaml document 2: no apiVersion",
        ),
        ("\n\n  late start", "late start"),
        ("x" * 300, "x" * 159 + "…"),
    ],
)
def test_the_error_line_is_the_first_line_that_says_something(error: str, line: str) -> None:
    assert first_line(error) == line


def test_every_deployment_status_has_a_word_an_icon_and_a_tone() -> None:
    assert set(STATES) == set(OVERVIEW_STATUSES)
    assert all(
        s.label and s.icon and s.tone in {"ok", "bad", "busy", "idle"} for s in STATES.values()
    )


def test_the_vendored_htmx_is_the_release_its_name_and_readme_record() -> None:
    vendor = DASHBOARD / "static" / "dashboard" / "vendor"
    (script,) = vendor.glob("htmx-*.min.js")
    version = script.name.removeprefix("htmx-").removesuffix(".min.js")
    readme = (vendor / "README.md").read_text()
    base = (DASHBOARD / "templates" / "dashboard" / "base.html").read_text()

    assert f'version:"{version}"' in script.read_text()
    assert f"| `{script.name}` |" in readme and f"| {version} |" in readme
    assert hashlib.sha256(script.read_bytes()).hexdigest() in readme
    assert f"dashboard/vendor/{script.name}" in base


def test_the_pages_load_the_vendored_htmx_and_the_stylesheet(client: Client) -> None:
    html = client.get("/").content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', html) + re.findall(
        r'<link rel="stylesheet" href="([^"]+)"', html
    )

    assert len(scripts) == 2
    for url in scripts:
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(30, "just now"), (5 * 60 + 10, "5 min ago"), (3 * 3600, "3 h ago"), (86400, "1 day ago")],
)
def test_times_read_as_how_long_ago(seconds: int, shown: str) -> None:
    from syncworker.dashboard.templatetags.dashboard_tags import ago

    assert ago(timezone.now() - timedelta(seconds=seconds)) == shown
    assert ago(None) == "never"


def test_the_wheel_ships_the_dashboards_templates_and_static_files(tmp_path: Path) -> None:
    """The stock image installs the wheel: pages without their templates would be 500s."""
    import subprocess
    import zipfile

    uv = shutil.which("uv")
    assert uv, "uv is needed to build the wheel (scripts/bootstrap installs it)"
    subprocess.run(
        [uv, "build", "--wheel", "--offline", "-q", "-o", str(tmp_path)], cwd=ROOT, check=True
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    shipped = {
        str(path.relative_to(ROOT))
        for pattern in ("templates/**/*.html", "static/**/*.*")
        for path in DASHBOARD.glob(pattern)
    }
    assert len(shipped) >= 12
    assert shipped <= names, sorted(shipped - names)
