"""Loading gitops-config.yaml into the database: ``import_config`` and the
``load_gitops_config`` management command."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from syncworker.config import load_config_file, parse_config
from syncworker.config.importer import import_config
from syncworker.models import Cluster, Deployment, NotificationTarget, Repository, Service
from tests.test_config_schema import CONFIGS, ERROR_CASES, SECRET

pytestmark = pytest.mark.django_db

SEED = CONFIGS / "seed-example.yaml"
BOTH_FORMS = CONFIGS / "both-service-forms.yaml"
MODELS = (Repository, Service, Cluster, NotificationTarget)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def render_dir(settings: Any, tmp_path: Path) -> Path:
    settings.GITOPS = {**settings.GITOPS, "RENDER_DIR": tmp_path / "rendered"}
    return tmp_path / "rendered"


def write_config(tmp_path: Path, text: str, name: str = "gitops-config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run(*args: Any, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("load_gitops_config", *[str(a) for a in args], stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def load(text: str) -> Any:
    return import_config(parse_config(textwrap.dedent(text)))


def snapshot() -> dict[tuple[str, int], tuple[Any, ...]]:
    """Every row of the config-managed models with all its column values."""
    rows = {}
    for model in MODELS:
        for obj in model.objects.all():
            values = tuple(getattr(obj, f.attname) for f in model._meta.concrete_fields)
            rows[(model.__name__, obj.pk)] = values
    return rows


def test_loading_the_seed_example_creates_its_repository_services_and_default_cluster(
    render_dir: Path,
) -> None:
    out, err = run(SEED)

    repo = Repository.objects.get()
    assert (repo.key, repo.provider, repo.full_name, repo.url, repo.branch) == (
        "nokube",
        "github",
        "AI-Infra-Team/nokube",
        "https://github.com/AI-Infra-Team/nokube",
        "main",
    )
    assert (repo.poll_interval, repo.token, repo.enabled, repo.managed_by_config) == (
        60,
        "ghp_your_token_here",
        True,
        True,
    )
    services = list(Service.objects.values_list("name", "repository__key", "k8s_yaml_dir"))
    assert services == [
        ("etcd", "nokube", "examples/etcd"),
        ("monitoring", "nokube", "examples/monitoring"),
    ]
    assert all(
        s.enabled and s.managed_by_config and s.prune and not s.stateless and s.cluster is None
        for s in Service.objects.all()
    )
    cluster = Cluster.objects.get()
    assert (cluster.name, cluster.applyer, cluster.is_default, cluster.managed_by_config) == (
        "default",
        "file",
        True,
        True,
    )
    assert cluster.settings == {"directory": str(render_dir)}
    assert not NotificationTarget.objects.exists()
    assert "repository nokube: created" in out
    assert "service etcd: created" in out
    assert out.strip().endswith("4 created")
    assert err == ""


def test_both_service_forms_load_and_the_legacy_url_reuses_the_matching_entry() -> None:
    run(BOTH_FORMS)

    assert dict(Service.objects.values_list("name", "repository__key")) == {
        "etcd": "nokube",
        "monitoring": "nokube",
        "tools": "ai-infra-team-tools",
    }
    derived = Repository.objects.get(key="ai-infra-team-tools")
    assert (derived.provider, derived.full_name, derived.url, derived.branch) == (
        "github",
        "AI-Infra-Team/tools",
        "https://github.com/AI-Infra-Team/tools",
        "main",
    )
    assert set(Repository.objects.values_list("poll_interval", flat=True)) == {30}
    assert Service.objects.get(name="tools").k8s_yaml_dir == "deploy"
    cluster = Cluster.objects.get()
    assert (cluster.name, cluster.applyer, cluster.is_default) == ("my-k8s-cluster", "nokube", True)
    assert cluster.settings == {
        "nokube_download_url": "https://downloads.example.com/nokube/linux-amd64/nokube"
    }
    target = NotificationTarget.objects.get()
    assert target.url == "https://hooks.example.com/services/T000/B000/XXXXSECRETPATH"
    assert target.enabled and target.managed_by_config


@pytest.mark.usefixtures("allow_file_repositories")
def test_the_extensions_load_into_their_columns() -> None:
    run(CONFIGS / "extensions.yaml")

    platform = Repository.objects.get(key="platform")
    assert (platform.provider, platform.url, platform.branch, platform.poll_interval) == (
        "git",
        "https://git.example.com/platform/manifests.git",
        "release",
        300,
    )
    assert platform.token == "glpat-platform-token"
    enterprise = Repository.objects.get(key="enterprise")
    assert (enterprise.provider, enterprise.api_url, enterprise.poll_interval) == (
        "github",
        "https://ghe.example.com/api/v3",
        120,
    )
    assert enterprise.webhook_secret == "enterprise-hook-secret"
    web = Service.objects.get(name="web")
    assert (web.namespace, web.stateless, web.prune) == ("web", True, True)
    assert Service.objects.get(name="api").prune is False
    cluster = Cluster.objects.get()
    assert (cluster.name, cluster.applyer) == ("prod", "kubernetes")
    assert cluster.settings == {"kubeconfig": "/etc/gitops/kubeconfig", "context": "prod-admin"}


def test_a_second_run_with_the_same_file_changes_nothing() -> None:
    config = load_config_file(BOTH_FORMS)
    import_config(config)
    before = snapshot()

    with CaptureQueriesContext(connection) as queries:
        report = import_config(config)

    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}
    ]
    assert writes == []
    assert snapshot() == before  # updated_at included
    assert not report.changed
    assert {change.action for change in report.changes} == {"unchanged"}
    out, _ = run(BOTH_FORMS)
    assert "unchanged" in out
    assert "created" not in out and "updated" not in out


def test_removing_a_service_disables_it_and_keeps_its_history(tmp_path: Path) -> None:
    run(SEED)
    etcd = Service.objects.get(name="etcd")
    deployment = Deployment.objects.create(service=etcd, commit_sha="a" * 40, status="succeeded")
    without_etcd = SEED.read_text().replace(
        "  - name: etcd\n    github: nokube\n    k8s_yaml_dir: examples/etcd\n", ""
    )

    out, _ = run(write_config(tmp_path, without_etcd))

    etcd.refresh_from_db()
    assert etcd.enabled is False
    assert Deployment.objects.get(pk=deployment.pk).service_id == etcd.pk
    assert Service.objects.get(name="monitoring").enabled
    assert "service etcd: disabled" in out


def test_a_service_coming_back_is_enabled_again(tmp_path: Path) -> None:
    run(SEED)
    text = SEED.read_text()
    run(write_config(tmp_path, text.replace("name: etcd", "name: etcd2")))
    assert Service.objects.get(name="etcd").enabled is False

    out, _ = run(SEED)

    assert Service.objects.get(name="etcd").enabled is True
    assert Service.objects.get(name="etcd2").enabled is False
    assert "service etcd: updated (enabled)" in out


def test_removing_a_repository_disables_it_and_its_services(tmp_path: Path) -> None:
    run(BOTH_FORMS)
    text = BOTH_FORMS.read_text()
    start = text.index("  # Legacy form for a repository")
    end = text.index("poll_interval:")
    run(write_config(tmp_path, text[:start] + text[end:]))

    assert Repository.objects.get(key="ai-infra-team-tools").enabled is False
    assert Service.objects.get(name="tools").enabled is False
    assert Repository.objects.get(key="nokube").enabled is True


def test_rows_made_in_the_admin_are_left_alone(tmp_path: Path) -> None:
    manual = Repository.objects.create(key="manual", provider="git", url="file:///srv/m.git")
    Service.objects.create(name="manual-svc", repository=manual, k8s_yaml_dir="k8s")
    NotificationTarget.objects.create(url="https://hooks.example.com/manual")
    before = snapshot()

    run(SEED)
    run(write_config(tmp_path, "github_configs: {}\n"))

    after = snapshot()
    for key, values in before.items():
        assert after[key] == values
    assert not Service.objects.filter(managed_by_config=True, enabled=True).exists()


def test_an_admin_row_the_file_names_is_taken_over_but_keeps_its_cluster() -> None:
    pinned = Cluster.objects.create(name="edge", applyer="kubectl")
    repo = Repository.objects.create(key="nokube", provider="git", url="file:///x.git")
    Service.objects.create(name="etcd", repository=repo, k8s_yaml_dir="old", cluster=pinned)

    out, _ = run(SEED)

    etcd = Service.objects.get(name="etcd")
    assert (etcd.k8s_yaml_dir, etcd.managed_by_config, etcd.cluster) == (
        "examples/etcd",
        True,
        pinned,
    )
    assert Repository.objects.get(key="nokube").provider == "github"
    assert "service etcd: updated (k8s_yaml_dir, managed_by_config)" in out


def test_check_writes_nothing_and_shows_what_would_change(tmp_path: Path) -> None:
    out, _ = run(SEED, check=True)

    assert not any(model.objects.exists() for model in MODELS)
    assert "repository nokube: created" in out
    assert "nothing written" in out

    run(SEED)
    before = snapshot()
    changed = SEED.read_text().replace("examples/etcd", "examples/etcd-v2")
    out, _ = run(write_config(tmp_path, changed), check=True)

    assert snapshot() == before
    assert "service etcd: updated (k8s_yaml_dir)" in out


def test_the_configured_applyer_becomes_the_only_default_cluster(tmp_path: Path) -> None:
    Cluster.objects.create(name="laptop", applyer="file", is_default=True)

    out, _ = run(BOTH_FORMS)

    assert list(Cluster.objects.filter(is_default=True).values_list("name", flat=True)) == [
        "my-k8s-cluster"
    ]
    assert "cluster laptop: updated (is_default)" in out

    run(SEED)  # no applyer: back to the embedded file applyer

    assert Cluster.objects.get(is_default=True).name == "default"
    nokube = Cluster.objects.get(name="my-k8s-cluster")
    assert (nokube.is_default, nokube.managed_by_config) == (False, True)


def test_removing_webhook_url_disables_its_notification_target(tmp_path: Path) -> None:
    run(BOTH_FORMS)
    text = BOTH_FORMS.read_text()
    run(write_config(tmp_path, text[: text.index("webhook_url:")]))

    target = NotificationTarget.objects.get()
    assert (target.enabled, target.managed_by_config) == (False, True)

    run(BOTH_FORMS)
    assert NotificationTarget.objects.get().enabled is True


def test_a_secret_the_file_does_not_set_keeps_its_stored_value_and_empty_clears_it() -> None:
    load("github_configs:\n  n: {repo_owner: o, repo_name: r}\n")
    Repository.objects.filter(key="n").update(token="set-in-admin", webhook_secret="hook")

    load("github_configs:\n  n: {repo_owner: o, repo_name: r}\n")
    stored = Repository.objects.values_list("token", "webhook_secret").get()
    assert stored == ("set-in-admin", "hook")

    report = load("github_configs:\n  n: {repo_owner: o, repo_name: r, token: ''}\n")
    assert Repository.objects.values_list("token", "webhook_secret").get() == ("", "hook")
    assert [str(c) for c in report.changes if c.kind == "repository"] == [
        "repository n: updated (token)"
    ]


def test_a_failure_while_writing_rolls_back_the_whole_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_save(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(Service, "save", broken_save)
    with pytest.raises(RuntimeError):
        import_config(load_config_file(SEED))

    assert not any(model.objects.exists() for model in MODELS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_a_bad_file_fails_the_command_naming_the_key_path_and_writes_nothing(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write_config(tmp_path, text)

    with pytest.raises(CommandError) as excinfo:
        run(path)

    message = str(excinfo.value)
    assert message.startswith(f"{path}: ")
    assert f"\n  {expected}" in message
    assert not any(model.objects.exists() for model in MODELS)


def test_a_bad_file_leaves_the_previous_import_untouched(tmp_path: Path) -> None:
    run(SEED)
    before = snapshot()
    broken = SEED.read_text().replace("k8s_yaml_dir: examples/etcd", "k8s_yaml_dir: ../etcd")

    with pytest.raises(CommandError):
        run(write_config(tmp_path, broken))

    assert snapshot() == before


def test_a_missing_file_is_named_in_the_error() -> None:
    with pytest.raises(CommandError, match=r"cannot read /nonexistent/gitops-config\.yaml: "):
        run("/nonexistent/gitops-config.yaml")


def test_without_a_path_the_configured_file_is_used(settings: Any) -> None:
    settings.GITOPS = {**settings.GITOPS, "CONFIG_FILE": str(SEED)}
    run()
    assert Service.objects.count() == 2


def test_without_a_path_or_a_configured_file_the_command_fails(settings: Any) -> None:
    settings.GITOPS = {**settings.GITOPS, "CONFIG_FILE": None}
    with pytest.raises(CommandError, match="give PATH or set GITOPS_CONFIG_FILE"):
        run()


def test_the_command_line_prints_every_error_to_stderr_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        f"""
        github_configs:
          nokube: {{repo_owner: AI-Infra-Team, token: [{SECRET}]}}
        services: {{}}
        """,
    )
    # A real process: call_command raises CommandError, only the command line exits.
    result = subprocess.run(
        [sys.executable, "manage.py", "load_gitops_config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert "github_configs.nokube.repo_name: required" in result.stderr
    assert "github_configs.nokube.token: expected a string, got a list" in result.stderr
    assert "services: expected a list, got a mapping" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_secrets_never_appear_in_output_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "hook-secret").write_text(f"{SECRET}-hook\n")
    good = write_config(
        tmp_path,
        f"""
        github_configs:
          nokube:
            repo_owner: AI-Infra-Team
            repo_name: nokube
            token: {SECRET}
            webhook_secret_file: hook-secret
        services:
          - {{name: etcd, github: nokube, k8s_yaml_dir: examples/etcd}}
        webhook_url: https://hooks.example.com/services/{SECRET}
        """,
    )
    outputs = [*run(good, check=True, verbosity=3), *run(good, verbosity=3)]
    rotated = write_config(tmp_path, good.read_text().replace(SECRET, SECRET + "2"), "b.yaml")
    (tmp_path / "hook-secret").write_text(f"{SECRET}-hook2\n")
    outputs += [*run(rotated, verbosity=3), *run(rotated, verbosity=3)]
    assert Repository.objects.get().token == SECRET + "2"
    assert "repository nokube: updated (token, webhook_secret)" in outputs[4]

    for value in (f"[{SECRET}]", f"'{SECRET} x'", f'"{SECRET}', f"{SECRET}: x", f"'{SECRET * 20}'"):
        bad = write_config(tmp_path, good.read_text().replace(SECRET, value, 1), "bad.yaml")
        with pytest.raises(CommandError) as excinfo:
            run(bad, verbosity=3)
        outputs.append(str(excinfo.value))

    captured = capsys.readouterr()
    for text in (*outputs, captured.out, captured.err, caplog.text):
        assert SECRET not in text
