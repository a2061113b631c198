"""One set of rules: the config file, the admin and the REST API refuse the same values
with the same message (syncworker.rules, through the models' validators)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from syncworker.config.schema import ConfigError, parse_config
from syncworker.models import Cluster, Repository, Service

pytestmark = pytest.mark.django_db

SERVICE_CASES = [
    ("name", "My_Svc", "'My_Svc' is not a DNS-1123 label"),
    ("namespace", "BAD NS", "'BAD NS' is not a DNS-1123 label"),
    ("k8s_yaml_dir", "../etc", "must stay inside the repository (no '..')"),
    ("k8s_yaml_dir", "/etc/kubernetes", "must be relative to the repository root, not absolute"),
    ("k8s_yaml_dir", "services/%2e%2e/web", "must not contain percent-escapes"),
]
REPOSITORY_CASES = [
    ("url", "https://bob:hunter2@git.example.com/x.git", "must not contain credentials"),
    ("url", "file:///etc", "file:// repositories are not allowed here"),
    ("url", "ftp://git.example.com/x.git", "unsupported scheme 'ftp'"),
    ("branch", "--upload-pack=touch /tmp/owned", "is not a valid branch name"),
    ("branch", "main..dev", "is not a valid branch name"),
]


@pytest.fixture
def repo() -> Repository:
    return Repository.objects.create(
        key="apps", provider="git", url="https://git.example.com/apps.git"
    )


def config_refusal(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return "\n".join(caught.value.errors)


def admin_refusal(client: Client, path: str, data: dict[str, Any], field: str) -> str:
    response = client.post(path, data)
    assert response.status_code == 200, "the form was accepted"
    errors = response.context["adminform"].form.errors
    return " ".join(errors.get(field, [])) + " ".join(errors.get("__all__", []))


def api_refusal(client: APIClient, path: str, data: dict[str, Any], field: str) -> str:
    response = client.post(path, data, format="json")
    assert response.status_code == 400, response.content
    return " ".join(str(m) for m in response.json().get(field, []))


@pytest.mark.parametrize(("field", "value", "message"), SERVICE_CASES)
def test_every_door_refuses_the_same_bad_service_values(
    field: str,
    value: str,
    message: str,
    repo: Repository,
    admin_client: Client,
    staff_api: APIClient,
) -> None:
    good = {"name": "web", "k8s_yaml_dir": "deploy/web", "namespace": "shop"}
    entry = {**good, field: value}
    config = (
        "github_configs:\n  apps: {url: 'https://git.example.com/apps.git'}\n"
        f"services:\n  - {{name: '{entry['name']}', github: apps,"
        f" k8s_yaml_dir: '{entry['k8s_yaml_dir']}', namespace: '{entry['namespace']}'}}\n"
    )
    form = {**entry, "repository": repo.pk, "prune": "on", "enabled": "on"}

    assert f"services[0].{field}: " in config_refusal(config)
    assert message in config_refusal(config)
    assert message in admin_refusal(admin_client, "/admin/syncworker/service/add/", form, field)
    assert message in api_refusal(
        staff_api, "/api/services/", {**entry, "repository": repo.pk}, field
    )
    assert not Service.objects.exists()


@pytest.mark.parametrize(("field", "value", "message"), REPOSITORY_CASES)
def test_every_door_refuses_the_same_bad_repository_values(
    field: str, value: str, message: str, admin_client: Client, staff_api: APIClient
) -> None:
    entry = {"url": "https://git.example.com/x.git", "branch": "main", field: value}
    config = f"github_configs:\n  x: {{url: '{entry['url']}', branch: '{entry['branch']}'}}\n"
    form = {**entry, "key": "x", "provider": "git", "poll_interval": 60, "enabled": "on"}

    refused = config_refusal(config)
    assert f"github_configs.x.{field}: " in refused
    assert message in refused
    assert message in admin_refusal(admin_client, "/admin/syncworker/repository/add/", form, field)
    api = {**entry, "key": "x", "provider": "git"}
    assert message in api_refusal(staff_api, "/api/repositories/", api, field)
    assert not Repository.objects.exists()


def test_no_message_quotes_the_credentials_of_a_refused_url(staff_api: APIClient) -> None:
    url = "https://bob:hunter2@git.example.com/x.git"
    response = staff_api.post(
        "/api/repositories/", {"key": "x", "provider": "git", "url": url}, format="json"
    )
    assert response.status_code == 400
    assert "hunter2" not in response.content.decode()
    assert "hunter2" not in config_refusal(f"github_configs:\n  x: {{url: '{url}'}}\n")


def test_file_repositories_are_accepted_under_the_configured_root_only(
    allow_file_repositories: Any, staff_api: APIClient
) -> None:
    inside = {"key": "local", "provider": "git", "url": "file:///srv/git/app.git"}
    outside = {"key": "etc", "provider": "git", "url": "file:///etc/app.git"}

    assert staff_api.post("/api/repositories/", inside, format="json").status_code == 201
    refused = api_refusal(staff_api, "/api/repositories/", outside, "url")
    assert "file:// repositories must be under /srv" in refused


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("a string", "settings must be a JSON object"),
        (["a", "list"], "settings must be a JSON object"),
        ({"directory": "/etc"}, "setting 'directory': must be under"),
        ({"directroy": "/tmp/x"}, "unknown setting(s) 'directroy'"),
    ],
)
def test_the_admin_and_the_api_refuse_cluster_settings_the_applyer_cannot_use(
    settings: Any, message: str, admin_client: Client, staff_api: APIClient
) -> None:
    cluster = {"name": "laptop", "applyer": "file", "settings": settings}
    import json

    form = {**cluster, "settings": json.dumps(settings)}

    assert message in admin_refusal(
        admin_client, "/admin/syncworker/cluster/add/", form, "settings"
    )
    assert message in api_refusal(staff_api, "/api/clusters/", cluster, "settings")
    assert not Cluster.objects.exists()


def test_the_config_file_refuses_a_file_applyer_directory_outside_its_root() -> None:
    refused = config_refusal("applyer_file:\n  directory: /etc\n")
    assert "applyer_file: cluster 'default' (file applyer): setting 'directory': must be under" in (
        refused
    )


def test_a_good_service_is_stored_in_canonical_form_by_every_door(
    repo: Repository, admin_client: Client, staff_api: APIClient
) -> None:
    admin_client.post(
        "/admin/syncworker/service/add/",
        {
            "name": "a",
            "repository": repo.pk,
            "k8s_yaml_dir": "./deploy//a/",
            "enabled": "on",
            "health_timeout": 300,
            "drift_interval": 300,  # the add form fills in the default
        },
    )
    staff_api.post(
        "/api/services/",
        {"name": "b", "repository": repo.pk, "k8s_yaml_dir": "deploy/b/"},
        format="json",
    )
    config = parse_config(
        "github_configs:\n  apps: {url: 'https://git.example.com/apps.git'}\n"
        "services:\n  - {name: c, github: apps, k8s_yaml_dir: ./deploy/c/}\n"
    )

    stored = dict(Service.objects.values_list("name", "k8s_yaml_dir"))
    assert stored == {"a": "deploy/a", "b": "deploy/b"}
    assert config.services[0].k8s_yaml_dir == "deploy/c"
