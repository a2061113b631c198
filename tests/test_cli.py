"""The ``gitops`` command line, run as the installed console script in a process of its
own (no Django settings, no database URL in its environment) against the live server,
with a real Celery worker process and a real Git server where it waits for deployments."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token

from syncworker.cli import waiting
from syncworker.models import Cluster, Deployment, Repository, Service
from tests.support.gitserver import WorkingCopy
from tests.support.procs import free_port

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
GITOPS = shutil.which("gitops", path=str(Path(sys.executable).parent)) or "gitops"
Status = Deployment.Status
# What a laptop has: none of the server's settings.
SERVER_ONLY = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY")


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def gitops(live_server: Any) -> Any:
    def run(
        *args: str, token: str = "", url: str = "", timeout: float = 120, columns: str = "200"
    ) -> Run:
        env = {k: v for k, v in os.environ.items() if k not in (*SERVER_ONLY, "COLUMNS")}
        env.update(GITOPS_URL=url or live_server.url, NO_COLOR="1")
        if columns:
            env["COLUMNS"] = columns
        env.pop("GITOPS_TOKEN", None)
        if token:
            env["GITOPS_TOKEN"] = token
        done = subprocess.run(
            [GITOPS, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd="/"
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


def make_token(*, staff: bool = True) -> str:
    user = User.objects.create_user(
        "ops" if staff else "dev", password="pw-123456789", is_staff=staff
    )
    return Token.objects.create(user=user).key


def deployment(service: Service, status: str, *, error: str = "", minutes: int = 5) -> Deployment:
    moment = timezone.now() - timedelta(minutes=minutes)
    return Deployment.objects.create(
        service=service,
        commit_sha=f"{service.pk:04x}" + "feed" * 9,
        status=status,
        error=error,
        bundle="kind: ConfigMap\n",
        bundle_digest="b" * 64 if status == Status.SUCCEEDED else "",
        queued_at=moment,
        started_at=moment,
        finished_at=moment + timedelta(seconds=2),
    )


@pytest.fixture
def fleet() -> dict[str, Service]:
    repo = Repository.objects.create(key="infra", provider="git", url="http://127.0.0.1:9/x.git")
    made = {
        name: Service.objects.create(name=name, repository=repo, k8s_yaml_dir=name)
        for name in ("web", "api", "batch")
    }
    deployment(made["web"], Status.SUCCEEDED, minutes=10)
    deployment(made["web"], Status.SUCCEEDED, minutes=5)
    error = "invalid bundle:\napi/a.yaml document 1: no kind"
    failed = deployment(made["api"], Status.FAILED, error=error)
    Deployment.objects.filter(pk=failed.pk).update(reason=Deployment.Reason.RENDER)
    return made


def test_status_is_a_table_like_the_dashboards_first_page(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    run = gitops("status")

    assert run.code == 0, run.err
    lines = {line.split()[1]: line for line in run.out.splitlines() if line.startswith("infra ")}
    assert set(lines) == {"web", "api", "batch"}
    assert "✓ succeeded" in lines["web"] and re.search(r"  [45]m ago  ", lines["web"])
    assert "✗ failed (render)" in lines["api"]
    assert "invalid bundle: api/a.yaml document 1: no kind" in lines["api"]
    assert "○ never deployed" in lines["batch"]
    assert "3 services: 1 failed, 1 succeeded, 1 never deployed" in run.out


def test_status_into_a_pipe_prints_every_column_whole(gitops: Any) -> None:
    repo = Repository.objects.create(
        key="platform-monorepo", provider="git", url="http://127.0.0.1:9/x.git"
    )
    service = Service.objects.create(
        name="kustomize-guestbook-frontend", repository=repo, k8s_yaml_dir="x"
    )
    error = "Rollout shop/bluegreen-demo: the server does not serve kind Rollout in argoproj.io"
    deployment(service, Status.FAILED, error=error)

    run = gitops("status", columns="")  # no COLUMNS: rich would assume 80

    line = next(line for line in run.out.splitlines() if line.startswith("platform-monorepo "))
    assert line.split()[:2] == ["platform-monorepo", "kustomize-guestbook-frontend"]
    assert "✗ failed" in line and error[:70] in line


def test_status_says_which_repositories_fail_to_poll_and_why(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    broken = Repository.objects.create(
        key="wrongbranch",
        provider="git",
        url="http://127.0.0.1:9/y.git",
        consecutive_failures=3,
        last_error="http://127.0.0.1:9/y.git: branch 'master' not found",
        last_polled_at=timezone.now(),
    )
    Service.objects.create(name="wb", repository=broken, k8s_yaml_dir="wb")

    mine = gitops("status", "--repo", "wrongbranch")
    other = gitops("status", "--repo", "infra", "-o", "json")

    assert mine.code == 0, mine.err
    assert (
        "✗ polling fails: wrongbranch: 3 failed polls in a row, the last 0s ago: "
        "http://127.0.0.1:9/y.git: branch 'master' not found"
    ) in mine.out
    assert other.json()["failing_repositories"] == []


def test_status_filters_go_to_the_server_and_a_bad_one_names_the_parameter(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    failed = gitops("status", "--status", "failed", "-o", "json")
    bad = gitops("status", "--status", "bogus")

    assert [row["name"] for row in failed.json()["services"]] == ["api"]
    assert bad.code == 3 and "bad request: status:" in bad.err and "bogus" in bad.err


def test_status_shows_health_and_sync_columns_and_filters_by_them(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    Service.objects.filter(name="web").update(health="healthy", sync_status="out-of-sync")
    Service.objects.filter(name="api").update(health="degraded", sync_status="synced")

    run = gitops("status")
    drifted = gitops("status", "--sync", "out-of-sync", "-o", "json")
    degraded = gitops("status", "--health", "degraded")
    bad = gitops("status", "--health", "sick")

    assert run.code == 0, run.err
    header = next(line for line in run.out.splitlines() if line.startswith("REPOSITORY"))
    assert header.split()[:5] == ["REPOSITORY", "SERVICE", "HEALTH", "SYNC", "STATUS"]
    lines = {line.split()[1]: line for line in run.out.splitlines() if line.startswith("infra ")}
    assert re.search(r"♥ healthy +↑ outofsync +✓ succeeded", lines["web"]), lines["web"]
    assert re.search(r"⚠ degraded +✓ synced +✗ failed", lines["api"]), lines["api"]
    assert re.search(r"\? unknown +\? unknown +○ never", lines["batch"]), lines["batch"]
    assert [row["name"] for row in drifted.json()["services"]] == ["web"]
    assert drifted.json()["sync_counts"]["out-of-sync"] == 1
    assert [line.split()[1] for line in degraded.out.splitlines() if line.startswith("infra ")] == [
        "api"
    ]
    assert bad.code == 3 and "bad request: health:" in bad.err


def test_history_lists_the_deployments_newest_first(gitops: Any, fleet: dict[str, Service]) -> None:
    Cluster.objects.create(name="kwok", is_default=True)
    web = list(fleet["web"].deployments.order_by("-pk").values_list("pk", flat=True))

    table = gitops("history", "web")
    data = gitops("history", "web", "--output", "json", "--limit", "1").json()

    assert table.code == 0, table.err
    ids = [int(line.split()[0]) for line in table.out.splitlines() if line.split()[0].isdigit()]
    assert ids == web
    assert "web (infra, cluster kwok): ✓ succeeded" in table.out  # the default cluster
    assert [d["id"] for d in data["deployments"]] == web[:1]


def test_every_command_answers_json_on_request(gitops: Any, fleet: dict[str, Service]) -> None:
    token = make_token()
    target = fleet["web"].deployments.order_by("pk").first()
    assert target is not None

    status = gitops("status", "-o", "json").json()
    history = gitops("history", "api", "-o", "json").json()
    sync = gitops("sync", "web", "-o", "json", token=token).json()
    rollback = gitops("rollback", "web", str(target.pk), "-o", "json", token=token).json()

    assert status["count"] == 3 and status["counts"]["failed"] == 1
    assert history["deployments"][0]["status"] == "failed"
    assert sync == {"result": "sync queued"}
    assert rollback["deployment"]["rollback_of"] == target.pk
    assert Deployment.objects.filter(rollback_of=target, trigger="rollback").count() == 1


def test_an_unknown_service_or_repository_is_a_clear_error(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    history = gitops("history", "nope")
    sync = gitops("sync", "--repo", "nope", token=make_token())

    assert (history.code, history.err.strip()) == (3, "gitops: error: unknown service 'nope'")
    assert sync.code == 3 and "unknown repository 'nope'" in sync.err


def test_a_wrong_url_is_a_clear_error(gitops: Any, live_server: Any) -> None:
    port = free_port()

    nobody = gitops("status", url=f"http://127.0.0.1:{port}")
    not_http = gitops("status", url="127.0.0.1:8000")
    not_ours = gitops("status", url=f"{live_server.url}/static")

    assert nobody.code == 3 and f"cannot reach http://127.0.0.1:{port}" in nobody.err
    assert not_http.code == 3 and "must be an http(s) URL" in not_http.err
    assert not_ours.code == 3 and "does not look like a Simple GitOps server" in not_ours.err
    assert "Traceback" not in nobody.err + not_http.err + not_ours.err


def test_a_bad_token_is_refused_clearly_and_never_printed(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    secret = "0123456789abcdef0123456789abcdef01234567"

    run = gitops("sync", "web", token=secret)

    assert run.code == 3 and "the server refused the token (401: Invalid token.)" in run.err
    assert secret not in run.out + run.err


def test_actions_without_a_token_or_by_a_non_staff_user_say_what_is_needed(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    anonymous = gitops("sync", "web")
    reader = gitops("sync", "web", token=make_token(staff=False))

    assert anonymous.code == 3 and "needs a staff user's API token" in anonymous.err
    assert reader.code == 3 and "a staff user is needed" in reader.err


def test_the_status_setting_closes_reads_to_anonymous_callers_too(
    gitops: Any, fleet: dict[str, Service], settings: Any
) -> None:
    settings.GITOPS = {**settings.GITOPS, "STATUS_API_PUBLIC": False}

    anonymous = gitops("status")
    staff = gitops("status", token=make_token())

    assert anonymous.code == 3 and "GITOPS_TOKEN" in anonymous.err
    assert staff.code == 0


def test_sync_needs_one_target(gitops: Any) -> None:
    neither = gitops("sync")
    both = gitops("sync", "web", "--repo", "infra")

    assert neither.code == both.code == 2
    assert "give a SERVICE or --repo KEY" in neither.err


def test_rollback_only_to_a_successful_deployment_of_that_service(
    gitops: Any, fleet: dict[str, Service]
) -> None:
    token = make_token()
    failed = fleet["api"].deployments.get()
    web = fleet["web"].deployments.first()
    assert web is not None

    refused = gitops("rollback", "api", str(failed.pk), token=token)
    elsewhere = gitops("rollback", "api", str(web.pk), token=token)

    assert refused.code == 1 and "only a deployment that succeeded" in refused.err
    assert elsewhere.code == 3 and f"service 'api' has no deployment {web.pk}" in elsewhere.err
    assert not Deployment.objects.filter(trigger="rollback").exists()


def test_the_command_line_never_imports_django() -> None:
    probe = (
        "import sys, syncworker.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith('django')))"
    )
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ONLY}

    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- waiting for real deployments (Celery worker process, Git server, file applyer) ----------


def configmap(value: str) -> dict[str, str | bytes | None]:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
    return {"deploy/web/cm.yaml": yaml.safe_dump({**body, "data": {"v": value}})}


@pytest.fixture
def deployed_repo(
    git_repo: WorkingCopy, tmp_path: Path, celery_worker_process: object
) -> Repository:
    git_repo.commit({**configmap("1"), "deploy/api/cm.yaml": yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "api"}}
    )})  # fmt: skip
    Cluster.objects.create(
        name="laptop", applyer="file", is_default=True, settings={"directory": str(tmp_path)}
    )
    repo = Repository.objects.create(key="cli", provider="git", url=git_repo.url)
    for name in ("web", "api"):
        Service.objects.create(name=name, repository=repo, k8s_yaml_dir=f"deploy/{name}")
    return repo


def test_sync_wait_follows_the_deployment_and_exits_0_when_it_succeeds(
    gitops: Any, deployed_repo: Repository
) -> None:
    run = gitops("sync", "web", "--wait", "--timeout", "90", token=make_token())

    deployed = Service.objects.get(name="web").deployments.get()
    assert run.code == 0, run.err
    assert run.out.strip() == f"done: web #{deployed.pk} succeeded"
    assert "waiting for the poll of cli" in run.err
    assert deployed.status == Status.SUCCEEDED


def test_sync_wait_with_nothing_changed_says_so(gitops: Any, deployed_repo: Repository) -> None:
    token = make_token()
    first = gitops("sync", "--repo", "cli", "--wait", "-o", "json", token=token)
    again = gitops("sync", "web", "--wait", token=token)

    assert first.code == 0, first.err
    assert sorted(d["service"] for d in first.json()["deployments"]) == ["api", "web"]
    assert again.code == 0 and again.out.startswith("nothing to deploy"), again.err


def test_sync_wait_exits_1_with_the_error_when_the_deployment_fails(
    gitops: Any, deployed_repo: Repository, git_repo: WorkingCopy
) -> None:
    git_repo.commit({"deploy/web/bad.yaml": "kind: ConfigMap\nmetadata: {name: x}\n"})

    run = gitops("sync", "web", "--wait", token=make_token())

    failed = Service.objects.get(name="web").deployments.get()
    assert run.code == 1, run.err
    assert f"failed: web #{failed.pk} failed" in run.out
    assert "deploy/web/bad.yaml" in run.out and "apiVersion" in run.out


def test_sync_wait_of_a_failed_service_without_a_change_exits_1_pointing_at_force(
    gitops: Any, deployed_repo: Repository, git_repo: WorkingCopy
) -> None:
    git_repo.commit({"deploy/web/bad.yaml": "kind: ConfigMap\nmetadata: {name: x}\n"})
    token = make_token()
    assert gitops("sync", "web", "--wait", token=token).code == 1
    failed = Service.objects.get(name="web").deployments.get()

    again = gitops("sync", "web", "--wait", token=token)
    whole = gitops("sync", "--repo", "cli", "--wait", "-o", "json", token=token)

    assert again.code == 1, again.err
    expected = (
        f"nothing to deploy: cli has no change, but the last deployment of web (#{failed.pk}) "
        "failed; `gitops sync web --force` deploys it again"
    )
    assert again.out.startswith(expected)
    assert "deploy/web/bad.yaml" in again.out
    assert whole.code == 0 and whole.json()["deployments"] == []  # reports what it deployed
    assert Service.objects.get(name="web").deployments.count() == 1


def test_progress_into_a_log_prints_a_line_when_the_state_changes_not_every_second(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = waiting.Progress()
    for elapsed, text in [(0.0, "waiting for the poll"), (1.0, "waiting for the poll"),
                          (2.0, "web #3 applying"), (3.0, "web #3 applying")]:  # fmt: skip
        progress.update(text, elapsed)
    progress.stop()

    assert capsys.readouterr().err.splitlines() == [
        "waiting for the poll (0s)",
        "web #3 applying (2s)",
    ]


def test_a_forced_sync_redeploys_an_unchanged_service_and_rollback_waits_too(
    gitops: Any, deployed_repo: Repository, tmp_path: Path, git_repo: WorkingCopy
) -> None:
    token = make_token()
    assert gitops("sync", "web", "--wait", token=token).code == 0
    first = Service.objects.get(name="web").deployments.get()
    git_repo.commit(configmap("2"))
    assert gitops("sync", "web", "--wait", token=token).code == 0

    forced = gitops("sync", "web", "--force", "--wait", token=token)
    rolled = gitops("rollback", "web", str(first.pk), "--wait", token=token)

    history = list(Service.objects.get(name="web").deployments.order_by("pk"))
    assert forced.code == 0 and rolled.code == 0, forced.err + rolled.err
    assert [d.trigger for d in history] == ["manual", "manual", "manual", "rollback"]
    assert rolled.out.strip() == f"done: web #{history[-1].pk} succeeded"
    assert "v: '1'" in (tmp_path / "web.yaml").read_text()


class SilentServer:
    """Accepts connections and never answers: a Git host that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        for connection in [self.sock, *self.held]:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_sync_wait_gives_up_at_its_timeout_with_exit_status_4(
    gitops: Any, silent: SilentServer, celery_worker_process: object
) -> None:
    repo = Repository.objects.create(
        key="slow", provider="git", url=f"http://127.0.0.1:{silent.port}/r.git"
    )
    Service.objects.create(name="slow-web", repository=repo, k8s_yaml_dir="d")

    run = gitops("sync", "slow-web", "--wait", "--timeout", "2", token=make_token())

    assert run.code == 4 and "gave up after 2s waiting for the sync of slow" in run.err
