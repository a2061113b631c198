"""Doors that could lose history or edits: deleting a repository or cluster in use, and
changing what the config file sets, are refused alike by the REST API and the admin
(syncworker.guards), each saying why."""

from __future__ import annotations

import html
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from syncworker.config import parse_config
from syncworker.config.importer import import_config
from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service

pytestmark = pytest.mark.django_db

TOKEN = "ghp_config_token_never_shown"
CONFIG = """\
github_configs:
  apps:
    url: https://git.example.com/apps.git
    branch: release
{token}services:
  - name: web
    github: apps
    k8s_yaml_dir: deploy/web
    namespace: shop
"""


def load(token: str = "") -> None:
    text = CONFIG.format(token=f"    token: {token}\n" if token else "")
    import_config(parse_config(textwrap.dedent(text)))


@pytest.fixture
def config_file(settings: Any, tmp_path: Path) -> str:
    """Where messages say the config-managed rows come from."""
    path = str(tmp_path / "gitops-config.yaml")
    settings.GITOPS = {**settings.GITOPS, "CONFIG_FILE": path}
    return path


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="infra", provider="git", url="https://git.example.com/infra.git"
    )


def admin_delete(client: Client, model: str, pk: int) -> str:
    """Delete one row through the admin's confirmation page, then with the "delete
    selected" action; return the text of the first page."""
    page = client.get(f"/admin/syncworker/{model}/{pk}/delete/")
    assert page.status_code == 200
    client.post(f"/admin/syncworker/{model}/{pk}/delete/", {"post": "yes"})
    client.post(
        f"/admin/syncworker/{model}/",
        {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
    )
    return html.unescape(page.content.decode())


def test_a_repository_in_use_is_kept_by_the_api_and_the_admin_with_its_history(
    repo: Repository, staff_api: APIClient, admin_client: Client
) -> None:
    cluster = Cluster.objects.create(name="kwok")
    web = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    Deployment.objects.create(service=web, commit_sha="a" * 40, status="succeeded")
    Deployment.objects.create(service=web, commit_sha="b" * 40, cluster=cluster)
    AppliedObject.objects.create(
        service=web, cluster=cluster, api_version="v1", kind="ConfigMap", name="web"
    )
    why = (
        "repository 'infra' is in use: services are read from it (web), 1 deployment in "
        "flight and they hold 1 applied object; disable it to stop polling (history "
        "kept), or remove its services first"
    )

    response = staff_api.delete(f"/api/repositories/{repo.pk}/")
    page = admin_delete(admin_client, "repository", repo.pk)

    assert response.status_code == 409, response.content
    assert response.json() == {"detail": why}
    assert why in page
    assert Repository.objects.filter(pk=repo.pk).exists()
    assert (Deployment.objects.count(), AppliedObject.objects.count()) == (2, 1)


def test_a_cluster_in_use_is_kept_by_the_admin_as_by_the_api(
    repo: Repository, staff_api: APIClient, admin_client: Client
) -> None:
    # No service deploys to either cluster any more: one still holds objects of "web"
    # (prune would forget them), the other has a deployment still to apply.
    holding = Cluster.objects.create(name="old")
    waiting = Cluster.objects.create(name="edge")
    web = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    AppliedObject.objects.create(
        service=web, cluster=holding, api_version="v1", kind="ConfigMap", name="web"
    )
    Deployment.objects.create(service=web, commit_sha="a" * 40, cluster=waiting)

    holding_page = admin_delete(admin_client, "cluster", holding.pk)
    waiting_page = admin_delete(admin_client, "cluster", waiting.pk)
    api = staff_api.delete(f"/api/clusters/{waiting.pk}/")

    assert (
        "cluster 'old' is in use: it holds 1 applied object; move or remove its services first"
        in holding_page
    )
    edge = "cluster 'edge' is in use: 1 deployment in flight; move or remove its services first"
    assert edge in waiting_page
    assert api.status_code == 409 and api.json() == {"detail": edge}
    assert Cluster.objects.count() == 2
    assert AppliedObject.objects.get().cluster == holding
    assert Deployment.objects.get().cluster == waiting


def test_an_unused_repository_and_cluster_are_deleted_by_either_door(
    repo: Repository, staff_api: APIClient, admin_client: Client
) -> None:
    other = Repository.objects.create(key="spare", provider="git", url="https://g.example/s.git")
    # A cluster whose deployments are all done: their history stays, without the cluster.
    done = Cluster.objects.create(name="done")
    web = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    Deployment.objects.create(service=web, commit_sha="a" * 40, cluster=done, status="failed")
    spare = Cluster.objects.create(name="spare")

    by_api = staff_api.delete(f"/api/repositories/{other.pk}/")
    admin_client.post(f"/admin/syncworker/cluster/{done.pk}/delete/", {"post": "yes"})
    admin_client.post(
        "/admin/syncworker/cluster/",
        {"action": "delete_selected", "_selected_action": [spare.pk], "post": "yes"},
    )

    assert by_api.status_code == 204
    assert list(Repository.objects.values_list("key", flat=True)) == ["infra"]
    assert not Cluster.objects.exists()
    assert Deployment.objects.get().cluster is None


def test_the_api_refuses_to_change_what_the_config_file_sets_naming_the_file(
    config_file: str, staff_api: APIClient
) -> None:
    load()
    web = Service.objects.get(name="web")
    apps = Repository.objects.get(key="apps")
    cluster = Cluster.objects.get(is_default=True)

    namespace = staff_api.patch(f"/api/services/{web.pk}/", {"namespace": "x"}, format="json")
    branch = staff_api.patch(
        f"/api/repositories/{apps.pk}/", {"branch": "dev", "poll_interval": 5}, format="json"
    )
    settings = staff_api.patch(
        f"/api/clusters/{cluster.pk}/", {"settings": {"directory": "/tmp/x"}}, format="json"
    )
    rename = staff_api.patch(f"/api/services/{web.pk}/", {"name": "web2"}, format="json")

    shown = staff_api.get(f"/api/services/{web.pk}/").json()["config_fields"]
    assert "namespace" in shown and "cluster" not in shown and "enabled" not in shown
    assert namespace.status_code == 409, namespace.content
    assert namespace.json()["detail"] == (
        f"service 'web' comes from the config file {config_file!r}, which sets namespace: "
        "change it in the file, since the next load_gitops_config would put the file's "
        "value back"
    )
    assert branch.status_code == 409
    assert "which sets branch, poll_interval: change them" in branch.json()["detail"]
    assert settings.status_code == 409 and "which sets settings" in settings.json()["detail"]
    assert rename.status_code == 409 and "which sets name" in rename.json()["detail"]
    web.refresh_from_db()
    assert (web.name, web.namespace, Repository.objects.get().branch) == ("web", "shop", "release")


def test_what_the_config_file_does_not_set_stays_editable_and_survives_a_load(
    config_file: str, staff_api: APIClient
) -> None:
    load()
    web = Service.objects.get(name="web")
    apps = Repository.objects.get(key="apps")
    edge = Cluster.objects.create(name="edge")

    # Same values as the file's (a PUT of the whole row) are no change.
    same = staff_api.patch(f"/api/services/{web.pk}/", {"namespace": "shop"}, format="json")
    # The cluster of a service, the pause switch and a secret the file leaves out.
    moved = staff_api.patch(
        f"/api/services/{web.pk}/", {"cluster": edge.pk, "enabled": False}, format="json"
    )
    token = staff_api.patch(f"/api/repositories/{apps.pk}/", {"token": TOKEN}, format="json")
    load()

    assert (same.status_code, moved.status_code, token.status_code) == (200, 200, 200)
    web.refresh_from_db()
    assert (web.cluster, web.enabled) == (edge, False)
    assert Repository.objects.get().token == TOKEN


def test_a_token_the_config_file_sets_is_refused_without_quoting_it(
    config_file: str, staff_api: APIClient
) -> None:
    load(token="ghp_from_the_file")
    apps = Repository.objects.get(key="apps")

    response = staff_api.patch(f"/api/repositories/{apps.pk}/", {"token": TOKEN}, format="json")

    assert response.status_code == 409
    assert "which sets token" in response.json()["detail"]
    assert TOKEN not in response.content.decode()
    assert "ghp_from_the_file" not in response.content.decode()
    assert Repository.objects.get().token == "ghp_from_the_file"


def test_the_admin_shows_what_the_config_file_sets_read_only_and_saves_the_rest(
    config_file: str, admin_client: Client
) -> None:
    load(token="ghp_from_the_file")
    web = Service.objects.get(name="web")
    apps = Repository.objects.get(key="apps")
    edge = Cluster.objects.create(name="edge")

    page = admin_client.get(f"/admin/syncworker/service/{web.pk}/change/")
    form = page.context["adminform"].form
    saved = admin_client.post(
        f"/admin/syncworker/service/{web.pk}/change/",
        # namespace and k8s_yaml_dir are the file's: posted anyway, they are ignored.
        {"namespace": "x", "k8s_yaml_dir": "other", "cluster": edge.pk, "enabled": ""},
    )
    repo_page = admin_client.get(f"/admin/syncworker/repository/{apps.pk}/change/")

    text = html.unescape(page.content.decode())
    # Django's message list capitalises the first letter.
    assert f"Service 'web' comes from the config file {config_file!r}, which sets" in text
    assert "(read-only here)" in text
    assert {"namespace", "k8s_yaml_dir", "name", "repository"}.isdisjoint(form.fields)
    assert {"cluster", "enabled"} <= set(form.fields)
    assert saved.status_code == 302, saved.context and saved.context["adminform"].form.errors
    web.refresh_from_db()
    assert (web.namespace, web.k8s_yaml_dir, web.cluster, web.enabled) == (
        "shop",
        "deploy/web",
        edge,
        False,
    )
    # A secret the file sets is neither editable nor shown; the one it leaves out is.
    repo_html = repo_page.content.decode()
    assert 'name="token"' not in repo_html and 'name="clear_token"' not in repo_html
    assert 'name="webhook_secret"' in repo_html
    assert "ghp_from_the_file" not in repo_html


def test_a_service_the_config_file_names_is_not_deleted_until_it_leaves_the_file(
    config_file: str, staff_api: APIClient, admin_client: Client
) -> None:
    load()
    web = Service.objects.get(name="web")
    Deployment.objects.create(service=web, commit_sha="a" * 40, status="succeeded")

    response = staff_api.delete(f"/api/services/{web.pk}/")
    page = admin_delete(admin_client, "service", web.pk)

    why = (
        f"service 'web' comes from the config file {config_file!r}: the next "
        "load_gitops_config would create it again, without its history; remove it from "
        "the file (which disables it) before deleting it"
    )
    assert response.status_code == 409 and response.json() == {"detail": why}
    assert why in page
    assert Deployment.objects.filter(service=web).count() == 1

    import_config(parse_config("github_configs: {}\n"))
    again = staff_api.patch(f"/api/services/{web.pk}/", {"enabled": True}, format="json")
    assert again.status_code == 409
    assert "was removed from the config file" in again.json()["detail"]
    assert staff_api.delete(f"/api/services/{web.pk}/").status_code == 204
