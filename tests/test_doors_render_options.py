"""The per-service render keys (recurse, include, exclude, create_namespace) through every
door: the config file, the admin and the REST API accept the same values and refuse the
same bad pattern with the same message (rules.include_patterns / exclude_patterns)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from syncworker.config.importer import import_config
from syncworker.config.schema import ConfigError, parse_config
from syncworker.models import Cluster, Repository, Service

pytestmark = pytest.mark.django_db

BAD_PATTERNS = [
    ("include", ["!"], "item 0 ('!') is not a gitignore-style pattern"),
    ("exclude", ["legacy/", "a\\"], "item 1 ('a\\\\') is not a gitignore-style pattern"),
    ("exclude", ["#legacy"], "item 0 ('#legacy') is a comment in gitignore syntax"),
]
CONFIG_HEAD = "github_configs:\n  apps: {url: 'https://git.example.com/apps.git'}\nservices:\n"


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="apps", provider="git", url="https://git.example.com/apps.git"
    )


def admin_form(repo: Repository, **fields: Any) -> dict[str, Any]:
    form = {"name": "web", "k8s_yaml_dir": "deploy/web", "repository": repo.pk, "enabled": "on"}
    form.update({"prune": "on", "recurse": "on", "create_namespace": "on", "namespace": "shop"})
    form.update({"health_timeout": 300, "drift_interval": 300})  # as the add form fills them
    return {**form, **fields}


@pytest.mark.parametrize(("field", "patterns", "message"), BAD_PATTERNS)
def test_every_door_refuses_the_same_bad_pattern_with_the_same_message(
    field: str,
    patterns: list[str],
    message: str,
    repo: Repository,
    admin_client: Client,
    staff_api: APIClient,
) -> None:
    listed = ", ".join(f"'{p}'" for p in patterns)
    config = f"{CONFIG_HEAD}  - {{name: web, github: apps, k8s_yaml_dir: d, {field}: [{listed}]}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    (error,) = caught.value.errors
    assert error.startswith(f"services[0].{field}: {message}")

    response = admin_client.post(
        "/admin/syncworker/service/add/", admin_form(repo, **{field: "\n".join(patterns)})
    )
    assert response.status_code == 200, "the form was accepted"
    assert message in " ".join(response.context["adminform"].form.errors[field])

    answer = staff_api.post(
        "/api/services/",
        {"name": "web", "repository": repo.pk, "k8s_yaml_dir": "d", field: patterns},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert message in " ".join(answer.json()[field])
    assert not Service.objects.exists()


def test_the_config_file_sets_the_keys_and_defaults_them(repo: Repository) -> None:
    Cluster.objects.create(name="default", applyer="file", is_default=True)
    config = parse_config(
        f"{CONFIG_HEAD}"
        "  - {name: guestbook, github: apps, k8s_yaml_dir: guestbook, namespace: guestbook,\n"
        "     recurse: false, exclude: [legacy/, all-in-one/], create_namespace: false}\n"
        "  - {name: plain, github: apps, k8s_yaml_dir: plain, include: ['*.yaml']}\n"
    )
    import_config(config)

    guestbook, plain = Service.objects.get(name="guestbook"), Service.objects.get(name="plain")
    assert (guestbook.recurse, guestbook.create_namespace) == (False, False)
    assert (guestbook.include, guestbook.exclude) == ([], ["legacy/", "all-in-one/"])
    assert (plain.recurse, plain.create_namespace) == (True, True)
    assert (plain.include, plain.exclude) == (["*.yaml"], [])
    assert not import_config(config).changed, "a second load changes nothing"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("recurse: 'no'", "services[0].recurse: expected true or false, got a string"),
        ("exclude: legacy/", "services[0].exclude: expected a list, got a string"),
        ("create_namespace: 1", "services[0].create_namespace: expected true or false"),
        ("include: [1]", "services[0].include: expected a list of gitignore-style patterns"),
    ],
)
def test_the_config_file_names_the_key_of_a_bad_value(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"{CONFIG_HEAD}  - {{name: web, github: apps, k8s_yaml_dir: d, {entry}}}\n")
    assert any(error.startswith(message) for error in caught.value.errors), caught.value.errors


def test_the_api_shows_and_takes_the_keys(repo: Repository, staff_api: APIClient) -> None:
    created = staff_api.post(
        "/api/services/",
        {"name": "web", "repository": repo.pk, "k8s_yaml_dir": "d", "exclude": ["legacy/"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["recurse"], body["include"], body["exclude"]) == (True, [], ["legacy/"])
    assert body["create_namespace"] is True

    changed = staff_api.patch(
        f"/api/services/{body['id']}/", {"recurse": False, "create_namespace": False}, "json"
    )
    assert changed.status_code == 200, changed.content
    service = Service.objects.get()
    assert (service.recurse, service.create_namespace, service.exclude) == (
        False,
        False,
        ["legacy/"],
    )


def test_the_admin_edits_patterns_one_per_line(repo: Repository, admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/syncworker/service/add/",
        admin_form(repo, exclude="legacy/\r\n\r\nall-in-one/\r\n", recurse=""),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    service = Service.objects.get()
    assert (service.exclude, service.include, service.recurse) == (
        ["legacy/", "all-in-one/"],
        [],
        False,
    )

    page = admin_client.get(f"/admin/syncworker/service/{service.pk}/change/").content.decode()
    assert "legacy/\nall-in-one/</textarea>" in page
    assert "What is read and where it goes" in page
