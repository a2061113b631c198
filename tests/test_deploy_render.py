"""apply-gitops: rendering the manifests that run Simple GitOps itself. Plain functions and
the command in fresh processes; no cluster (tests/test_deploy_apiserver.py has one)."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from syncworker.config import parse_config
from syncworker.deployrender import cli, lockexport, template

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = "deploy/example/gitops-config.yaml"
EXAMPLE_RENDERED = ROOT / "deploy" / "example" / "rendered.yaml"
EXAMPLE_ARGS = ["--cluster-name", "my-k8s-cluster", "--config-file", EXAMPLE_CONFIG, "--dry-run"]
EXAMPLE_CONFIG_TEXT = "".join(
    line
    for line in (ROOT / EXAMPLE_CONFIG).read_text().splitlines(True)
    if "webhook_url" not in line
)

TOKEN = "ghp_DoNotLeakThisToken0123456789"
FILE_TOKEN = "glpat-AlsoSecretFromAFile987"
WEBHOOK_SECRET = "whsec-NeverInTheConfigMap42"
# Slack's incoming-webhook URLs carry their credential in the path.
WEBHOOK_URL = "https://hooks.slack.com/services/T0/B0/SlackPathSecret77"
SECRET_CONFIG = f"""\
github_configs:
  app:
    repo_owner: acme
    repo_name: app
    token: "{TOKEN}"
    webhook_secret: "{WEBHOOK_SECRET}"
  infra:
    url: https://git.example.com/team/infra.git
    token_file: infra-token
  public:
    repo_owner: acme
    repo_name: public
services:
  - {{name: web, github: app, k8s_yaml_dir: deploy}}
  - {{name: infra, github: infra, k8s_yaml_dir: k8s}}
poll_interval: 30
webhook_url: "{WEBHOOK_URL}"
"""


def run_cli(*args: str) -> tuple[int, str, str]:
    """The command in this process (fast), as ``main`` runs it: argparse exits 2 on a bad
    option value, with its message on stderr."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed = cli.build_parser().parse_args(list(args))
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    code = cli.run(parsed, out.write, err.write)
    return code, out.getvalue(), err.getvalue()


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncworker.deployrender.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def render_example(*extra: str) -> list[dict[str, Any]]:
    code, out, err = run_cli(*EXAMPLE_ARGS, *extra)
    assert code == 0, err
    return documents(out)


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}
    }


@pytest.fixture
def secret_config(tmp_path: Path) -> Path:
    (tmp_path / "infra-token").write_text(FILE_TOKEN + "\n")
    path = tmp_path / "gitops-config.yaml"
    path.write_text(SECRET_CONFIG)
    return path


def test_rendering_twice_gives_the_same_bytes() -> None:
    first = run_cli(*EXAMPLE_ARGS)
    second = run_cli(*EXAMPLE_ARGS)
    assert first[0] == 0
    assert first == second


def test_fresh_processes_render_the_same_bytes_whatever_the_hash_seed() -> None:
    outputs = [run_process(*EXAMPLE_ARGS, env={"PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    assert [p.returncode for p in outputs] == [0, 0], outputs[0].stderr
    assert outputs[0].stdout == outputs[1].stdout
    assert outputs[0].stdout == run_cli(*EXAMPLE_ARGS)[1]


def test_the_console_script_needs_no_django_settings_of_the_users(
    secret_config: Path, tmp_path: Path
) -> None:
    # A config whose checks read settings and models: a url: repository, an applyer.
    config = tmp_path / "with-applyer.yaml"
    config.write_text(SECRET_CONFIG + "applyer_kubectl:\n  cluster_name: prod\n")
    args = ["--cluster-name", "prod", "--config-file", str(config), "--dry-run"]
    bare = {
        k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY"}
    }
    process = subprocess.run(
        [str(Path(sys.executable).with_name("apply-gitops")), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=bare,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout == run_cli(*args)[1]


def test_the_committed_example_is_up_to_date() -> None:
    process = run_process(*EXAMPLE_ARGS)
    assert process.returncode == 0, process.stderr
    assert EXAMPLE_RENDERED.read_text() == process.stdout, (
        "deploy/example/rendered.yaml is stale; regenerate it with: "
        f".venv/bin/apply-gitops {' '.join(EXAMPLE_ARGS)} > deploy/example/rendered.yaml"
    )


def test_the_stock_image_pins_match_uv_lock() -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed (scripts/bootstrap installs it)")
    assert lockexport.export_requirements() == lockexport.REQUIREMENTS.read_text(), (
        "syncworker/deployrender/manifests/requirements.txt is stale: "
        "python -m syncworker.deployrender.lockexport"
    )


def test_every_document_is_an_object_with_api_version_kind_and_name() -> None:
    text = EXAMPLE_RENDERED.read_text()
    assert text.startswith("# Simple GitOps")
    docs = documents(text)
    assert len(docs) == text.count("\n---\n")
    for doc in docs:
        assert isinstance(doc, dict)
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    kinds = [doc["kind"] for doc in docs]
    assert kinds[0] == "Namespace"
    assert kinds.count("Job") == 1


def test_tokens_and_webhook_secrets_stay_out_of_the_configmap_and_stderr(
    secret_config: Path,
) -> None:
    code, out, err = run_cli("--cluster-name", "prod", "--config-file", str(secret_config),
                             "--dry-run")  # fmt: skip
    assert code == 0, err
    docs = documents(out)
    shipped = find(docs, "ConfigMap", "gitops-config")["data"]["gitops-config.yaml"]
    for secret in (TOKEN, FILE_TOKEN, WEBHOOK_SECRET, WEBHOOK_URL, "SlackPathSecret77"):
        assert secret not in out  # only base64 in the Secret's data
        assert secret not in err
    data = find(docs, "Secret", "gitops-secrets")["data"]
    assert {key: base64.b64decode(value).decode() for key, value in data.items()} == {
        "app-token": TOKEN,
        "app-webhook-secret": WEBHOOK_SECRET,
        "infra-token": FILE_TOKEN,
        "webhook-url": WEBHOOK_URL,
    }
    assert yaml.safe_load(shipped)["webhook_url_file"] == "/etc/gitops/secrets/webhook-url"
    assert "webhook_url" not in yaml.safe_load(shipped)
    config = yaml.safe_load(shipped)["github_configs"]
    assert config["app"]["token_file"] == "/etc/gitops/secrets/app-token"
    assert config["app"]["webhook_secret_file"] == "/etc/gitops/secrets/app-webhook-secret"
    assert config["infra"]["token_file"] == "/etc/gitops/secrets/infra-token"
    assert "token" not in config["app"] and "token_file" not in config["public"]


def test_the_shipped_config_loads_the_same_secrets_from_the_mounted_secret(
    secret_config: Path, tmp_path: Path
) -> None:
    code, out, _ = run_cli("--cluster-name", "prod", "--config-file", str(secret_config),
                           "--dry-run")  # fmt: skip
    assert code == 0
    docs = documents(out)
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for key, value in find(docs, "Secret", "gitops-secrets")["data"].items():
        (mounted / key).write_bytes(base64.b64decode(value))
    shipped = find(docs, "ConfigMap", "gitops-config")["data"]["gitops-config.yaml"]
    loaded = parse_config(shipped.replace("/etc/gitops/secrets", str(mounted)))
    original = parse_config(SECRET_CONFIG.replace("infra-token", str(tmp_path / "infra-token")))
    assert loaded.repositories == original.repositories
    assert [r.token for r in loaded.repositories] == [TOKEN, FILE_TOKEN, None]
    assert loaded.services == original.services
    assert loaded.webhook_url == original.webhook_url == WEBHOOK_URL
    assert (loaded.applyer.kind, loaded.applyer.cluster_name) == ("kubernetes", "prod")
    job = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"]
    mounted_keys = next(v for v in job["volumes"] if v["name"] == "config-secrets")
    assert {i["key"] for i in mounted_keys["secret"]["items"]} == set(os.listdir(mounted))


def test_a_webhook_url_from_a_local_file_goes_to_the_secret_too(tmp_path: Path) -> None:
    (tmp_path / "hook").write_text(WEBHOOK_URL + "\n")
    config = tmp_path / "gitops-config.yaml"
    config.write_text(EXAMPLE_CONFIG_TEXT + "webhook_url_file: hook\n")
    code, out, err = run_cli("--cluster-name", "c", "--config-file", str(config), "--dry-run")
    assert code == 0, err
    data = find(documents(out), "Secret", "gitops-secrets")["data"]
    assert base64.b64decode(data["webhook-url"]).decode() == WEBHOOK_URL
    assert WEBHOOK_URL not in out


def test_a_bad_webhook_url_file_is_named_and_its_content_never_shown(tmp_path: Path) -> None:
    (tmp_path / "hook").write_text("mailto:SlackPathSecret77@example.com\n")
    config = tmp_path / "gitops-config.yaml"
    config.write_text(EXAMPLE_CONFIG_TEXT + "webhook_url_file: hook\n")
    process = run_process("--cluster-name", "c", "--config-file", str(config), "--dry-run")
    assert (process.returncode, process.stdout) == (1, "")
    assert "webhook_url_file: expected an http:// or https:// URL" in process.stderr
    assert "SlackPathSecret77" not in process.stderr


def test_the_migration_job_reruns_when_a_token_changes(secret_config: Path) -> None:
    def job_name() -> str:
        code, out, _ = run_cli("--cluster-name", "prod", "--config-file", str(secret_config),
                               "--dry-run")  # fmt: skip
        assert code == 0
        return next(d for d in documents(out) if d["kind"] == "Job")["metadata"]["name"]

    before = job_name()
    (secret_config.parent / "infra-token").write_text("glpat-Rotated\n")
    assert job_name() != before
    assert before.startswith("gitops-migrate-")


def test_the_job_migrates_then_loads_the_mounted_config() -> None:
    docs = render_example()
    job = next(d for d in docs if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["command"][-1]
    assert script == (
        "django-admin migrate --noinput && "
        "exec django-admin load_gitops_config /etc/gitops/gitops-config.yaml"
    )
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/gitops/gitops-config.yaml", "/etc/gitops/secrets"} <= mounts


def test_beat_and_the_apply_worker_are_single_recreated_pods() -> None:
    docs = render_example()
    for name in ("gitops-beat", "gitops-apply-worker"):
        spec = find(docs, "Deployment", name)["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
    command = find(docs, "Deployment", "gitops-apply-worker")["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert command[-8:] == ["-n", "apply@%h", "-Q", "apply", "-c", "4", "-l", "INFO"]


def test_fetch_workers_are_a_daemonset_on_management_nodes() -> None:
    docs = render_example()
    spec = find(docs, "DaemonSet", "gitops-fetch-worker")["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "node-role.nokube.io/management", "operator": "In", "values": ["true"]}
            ]
        }
    ]
    assert "-Q" in spec["containers"][0]["command"]


def test_fetch_workers_can_be_a_deployment_with_replicas() -> None:
    docs = render_example("--fetch-workers", "deployment", "--replicas", "3")
    assert not [d for d in docs if d["kind"] == "DaemonSet"]
    assert find(docs, "Deployment", "gitops-fetch-worker")["spec"]["replicas"] == 3
    assert find(docs, "Deployment", "gitops-web")["spec"]["replicas"] == 3


def test_the_web_server_has_health_and_readiness_probes() -> None:
    docs = render_example()
    web = find(docs, "Deployment", "gitops-web")["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    host = {"name": "Host", "value": "localhost"}
    assert host in web["readinessProbe"]["httpGet"]["httpHeaders"]
    allowed = next(e["value"] for e in web["env"] if e["name"] == "ALLOWED_HOSTS")
    assert "localhost" in allowed.split(",")
    service = find(docs, "Service", "gitops-web")["spec"]
    assert service["ports"][0]["targetPort"] == "http"


def test_every_container_has_resources_and_runs_restricted() -> None:
    docs = render_example()
    for where, spec in pod_specs(docs).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"]:
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            assert set(limits) == set(requests) == {"cpu", "memory"}, where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where


def test_only_the_apply_worker_gets_a_kubernetes_token() -> None:
    docs = render_example()
    accounts = {
        d["metadata"]["name"]: d["automountServiceAccountToken"]
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    assert accounts == {"gitops": False, "gitops-apply": True}
    users = {where: spec.get("serviceAccountName") for where, spec in pod_specs(docs).items()}
    assert [where for where, sa in users.items() if sa == "gitops-apply"] == [
        "Deployment/gitops-apply-worker"
    ]
    binding = find(docs, "ClusterRoleBinding", "simple-gitops:gitops:apply")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gitops-apply", "namespace": "gitops"}
    ]
    rules = find(docs, "ClusterRole", "simple-gitops:gitops:apply")["rules"]
    groups = {rule["apiGroups"][0] for rule in rules}
    assert "rbac.authorization.k8s.io" not in groups
    assert all("escalate" not in rule["verbs"] and "*" not in rule["verbs"] for rule in rules)


def test_scope_renders_a_role_per_namespace_and_nothing_cluster_wide() -> None:
    docs = render_example("--scope", "namespaces=team-b,team-a")
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    roles = [d for d in docs if d["kind"] == "Role"]
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    assert all("namespaces" not in rule["resources"] for rule in roles[0]["rules"])
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["team-a", "team-b"]
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert namespaces == ["gitops", "team-a", "team-b"]


def test_resources_can_be_replaced_or_extended() -> None:
    docs = render_example("--resources", "configmaps,apps/deployments",
                          "--add-resources", "rbac.authorization.k8s.io/roles")  # fmt: skip
    rules = find(docs, "ClusterRole", "simple-gitops:gitops:apply")["rules"]
    assert [(r["apiGroups"], r["resources"]) for r in rules] == [
        ([""], ["configmaps"]),
        (["apps"], ["deployments"]),
        (["rbac.authorization.k8s.io"], ["roles"]),
    ]


def test_without_secrets_given_the_header_says_how_to_create_them() -> None:
    code, out, err = run_cli(*EXAMPLE_ARGS)
    assert code == 0
    header = out.split("\n---\n", 1)[0]
    assert "kubectl -n gitops create secret generic gitops-credentials" in header
    assert "--from-literal=postgres-password=" in header
    assert "gitops-credentials" in err
    web = find(documents(out), "Deployment", "gitops-web")["spec"]["template"]["spec"]
    credentials = next(v for v in web["volumes"] if v["name"] == "credentials")
    assert credentials["projected"]["sources"][0]["secret"]["name"] == "gitops-credentials"


def test_given_secret_files_are_rendered_and_nothing_is_left_to_create(tmp_path: Path) -> None:
    files = {}
    for stem, value in (("secret-key", "k" * 50), ("flower-auth", "admin:pw"),
                        ("postgres-password", "pg-pass")):  # fmt: skip
        files[stem] = tmp_path / stem
        files[stem].write_text(value + "\n")
    app_wheel = tmp_path / "simple_gitops-0.1.0-py3-none-any.whl"
    app_wheel.write_bytes(b"PK\x03\x04 not really a wheel")
    code, out, err = run_cli(
        *EXAMPLE_ARGS,
        *(arg for stem, path in files.items() for arg in (f"--{stem}-file", str(path))),
        "--app-wheel", str(app_wheel),
    )  # fmt: skip
    assert code == 0, err
    assert "gitops-credentials" not in out + err
    assert "ConfigMap gitops-app" not in out.split("\n---\n", 1)[0]
    docs = documents(out)
    data = find(docs, "Secret", "gitops-secrets")["data"]
    assert sorted(data) == ["flower-basic-auth", "nokube-token", "postgres-password",
                            "secret-key", "webhook-url"]  # fmt: skip
    app = find(docs, "ConfigMap", "gitops-app")
    assert base64.b64decode(app["binaryData"][app_wheel.name]) == app_wheel.read_bytes()


def test_external_postgres_and_redis_replace_the_bundled_ones(tmp_path: Path) -> None:
    docs = render_example("--database-url-secret", "shared-db:url",
                          "--redis-url", "rediss://:pw@redis.example.com:6380/2")  # fmt: skip
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    assert not [d for d in docs if d["metadata"]["name"] == "gitops-redis"]
    assert "redis-url" in find(docs, "Secret", "gitops-secrets")["data"]
    web = find(docs, "Deployment", "gitops-web")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in web["containers"][0]["env"]}
    assert env["DATABASE_URL_FILE"] == "/etc/gitops/credentials/database-url"
    assert env["CELERY_BROKER_URL_FILE"] == "/etc/gitops/credentials/redis-url"
    assert "DATABASE_URL" not in env and "PGPASSWORD" not in env
    sources = next(v for v in web["volumes"] if v["name"] == "credentials")["projected"]["sources"]
    assert {"key": "url", "path": "database-url"} in next(
        s["secret"]["items"] for s in sources if s["secret"]["name"] == "shared-db"
    )


def test_flower_gets_basic_auth_and_no_database_credentials() -> None:
    docs = render_example()
    spec = find(docs, "Deployment", "gitops-flower")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "gitops-credentials",
        "key": "flower-basic-auth",
    }
    assert "PGPASSWORD" not in env and "DATABASE_URL" not in env


def test_a_built_image_runs_its_commands_without_the_stock_runtime() -> None:
    image = "registry.example.com/simple-gitops:0.1.0"
    docs = render_example("--image", image)
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "runtime" in d["metadata"]["name"]]
    ours = [c for spec in pod_specs(docs).values() for c in spec["containers"]
            if c["image"] == image]  # fmt: skip
    assert len(ours) == 6
    for container in ours:
        assert container["command"][0] in {"gunicorn", "celery", "/bin/sh"}
        assert "/etc/gitops/runtime/start.sh" not in container["command"]
        assert not any(v["name"] == "GITOPS_RUNTIME_DIGEST" for v in container["env"])


def test_the_stock_image_installs_the_locked_requirements_at_start() -> None:
    docs = render_example()
    runtime = find(docs, "ConfigMap", "gitops-runtime")["data"]
    requirements = template.read_text("requirements.txt")
    assert runtime["requirements.txt"] == requirements
    assert "django==" in requirements and "pytest" not in requirements
    web = find(docs, "Deployment", "gitops-web")["spec"]["template"]["spec"]["containers"][0]
    assert web["command"][:3] == ["/bin/sh", "/etc/gitops/runtime/start.sh", "--collectstatic"]
    assert web["image"] == "python:3.11-slim"


def test_a_bad_config_file_names_the_key_path_and_prints_nothing(tmp_path: Path) -> None:
    config = tmp_path / "gitops-config.yaml"
    config.write_text(textwrap.dedent(f"""\
        github_configs:
          nokube: {{repo_owner: a, repo_name: b, token: "{TOKEN} with space"}}
        services:
          - {{name: etcd, github: nokub, k8s_yaml_dir: e}}
        """))  # fmt: skip
    process = run_process("--cluster-name", "c", "--config-file", str(config), "--dry-run")
    assert process.returncode == 1
    assert process.stdout == ""
    assert "services[0].github: unknown repository key 'nokub'" in process.stderr
    assert "github_configs.nokube.token: must not contain whitespace" in process.stderr
    assert TOKEN not in process.stderr


def test_a_missing_config_file_fails_without_output() -> None:
    process = run_process("--cluster-name", "c", "--config-file", "no/such.yaml", "--dry-run")
    assert (process.returncode, process.stdout) == (1, "")
    assert "cannot read no/such.yaml" in process.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-option"],
        ["--fetch-workers", "statefulset"],
    ],
)
def test_an_unknown_option_fails_and_prints_nothing(args: list[str]) -> None:
    process = run_process(*EXAMPLE_ARGS, *args)
    assert process.returncode == 2
    assert process.stdout == ""
    assert "usage: apply-gitops" in process.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "everything"], "--scope: expected 'cluster' or 'namespaces=NS1,NS2'"),
        (["--namespace", "Not_A_Label"], "--namespace: 'Not_A_Label' is not a DNS-1123 label"),
        (["--database-url-secret", "nocolon"], "--database-url-secret: expected NAME:KEY"),
        (["--database-url", "mysql://u:hunter2@db/x"], "--database-url: expected a postgres"),
        (["--image", "acme/gitops:1", "--source-url", "https://x/a.whl"], "--source-url: only"),
        (["--replicas", "0"], "--replicas: must be a whole number, at least 1"),
        (["--artifacts-size", "lots"], "--artifacts-size: 'lots' is not a size"),
        (["--allowed-hosts", "a b"], "--allowed-hosts: 'a b' is not a host name"),
        (["--resources", "Foo"], "--resources: 'Foo' is not RESOURCE or GROUP/RESOURCE"),
        (["--cluster-name", "bad name"], "--cluster-name: 'bad name' is not a valid key"),
        (["--download-base-url", "ftp://x"], "--download-base-url: expected an http://"),
        (["--secret-key-file", "/no/such/file"], "--secret-key-file: cannot read /no/such/file"),
        (
            ["--database-url", "postgres://h/db", "--postgres-password-secret", "pg:pw"],
            "--postgres-password-*: only for the bundled PostgreSQL",
        ),
    ],
)
def test_a_bad_option_value_fails_and_prints_nothing(args: list[str], message: str) -> None:
    code, out, err = run_cli(*EXAMPLE_ARGS, *args)
    assert (code, out) == (2, "")
    assert message in err
    assert "hunter2" not in err


def test_manage_py_apply_gitops_prints_the_same_as_the_console_script() -> None:
    out = io.StringIO()
    call_command("apply_gitops", *EXAMPLE_ARGS, stdout=out, stderr=io.StringIO())
    assert out.getvalue() == EXAMPLE_RENDERED.read_text()


def test_a_whole_placeholder_takes_any_value_and_none_removes_its_key_or_item() -> None:
    (doc,) = template.fill(
        'a: ${n}\nb: ${m}\nc: ${gone}\nd: [x, "${gone}", y]\n',
        {"n": 3, "m": {"k": [1]}, "gone": None},
    )
    assert doc == {"a": 3, "b": {"k": [1]}, "d": ["x", "y"]}


def test_a_placeholder_inside_text_is_replaced_by_the_text_of_its_value() -> None:
    (doc,) = template.fill("url: http://web.${ns}.svc:${port}/\n", {"ns": "prod", "port": 80})
    assert doc == {"url": "http://web.prod.svc:80/"}
    with pytest.raises(TypeError, match="needs text"):
        template.fill("url: http://web.${ns}.svc\n", {"ns": None})
    with pytest.raises(KeyError):
        template.fill("a: ${missing}\n", {})


def test_if_and_unless_keep_or_drop_a_value_an_item_or_a_whole_document() -> None:
    text = (
        "--- !if:on\na: !if:on {x: 1}\nb: !unless:on 2\n"
        'c: [!if:on one, !unless:on two, "3", !if:on 4]\n'
        "--- !unless:on\nz: 1\n"
    )
    assert template.fill(text, {"on": True}) == [{"a": {"x": 1}, "c": ["one", "3", 4]}]
    assert template.fill(text, {"on": False}) == [{"z": 1}]


def test_lists_from_placeholders_and_conditions_are_spliced_but_literal_lists_are_not() -> None:
    text = 'l: ["${pre}", a, !if:on [b, c], [d], "${empty}"]\n'
    (doc,) = template.fill(text, {"pre": ["p1", "p2"], "on": True, "empty": []})
    assert doc == {"l": ["p1", "p2", "a", "b", "c", ["d"]]}


def test_an_alias_in_a_manifest_stays_an_alias_in_the_output() -> None:
    (doc,) = template.fill("a: &cmd [x, y]\nb: *cmd\nc: [x, y]\n", {})
    assert doc["a"] is doc["b"] and doc["c"] is not doc["a"]
    assert "&id001" in template.to_yaml(doc)


def test_label_tags_give_our_labels_and_the_selector_part_of_them() -> None:
    (doc,) = template.fill("l: !labels web\ns: !selector broker redis\n", {})
    assert doc["l"] == {
        "app.kubernetes.io/name": "simple-gitops",
        "app.kubernetes.io/component": "web",
        "app.kubernetes.io/part-of": "simple-gitops",
        "app.kubernetes.io/managed-by": "apply-gitops",
    }
    assert doc["s"] == {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "broker"}
