"""The test bed itself talks to real servers: Git over smart HTTP, Redis, PostgreSQL and a
Celery worker process."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest
import redis
from django.db import connection

from syncworker.models import Repository
from syncworker.tasks import ping
from tests.support.gitserver import GitHttpServer, WorkingCopy


def test_a_pushed_commit_is_read_back_over_smart_http(git_repo: WorkingCopy) -> None:
    sha = git_repo.commit({"deploy/app.yaml": "kind: ConfigMap\n"}, "first")

    heads = subprocess.run(
        ["git", "ls-remote", git_repo.url, "refs/heads/main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert heads.split() == [sha, "refs/heads/main"]
    with tempfile.TemporaryDirectory() as clone:
        subprocess.run(["git", "clone", "-q", git_repo.url, clone], check=True)
        with open(os.path.join(clone, "deploy/app.yaml")) as handle:
            assert handle.read() == "kind: ConfigMap\n"


def test_git_server_counts_the_requests_of_an_ls_remote(
    git_server: GitHttpServer, git_repo: WorkingCopy
) -> None:
    git_repo.commit({"a.txt": "a"})
    git_server.reset_counters()
    # Protocol v0 advertises the refs in the answer to one GET; v2 needs a second POST.
    subprocess.run(
        ["git", "-c", "protocol.version=0", "ls-remote", git_repo.url],
        check=True,
        capture_output=True,
    )
    assert [(r.method, r.status) for r in git_server.requests] == [("GET", 200)]
    assert git_server.requests[0].path.endswith("/info/refs")
    git_server.reset_counters()
    subprocess.run(["git", "ls-remote", git_repo.url], check=True, capture_output=True)
    assert [r.method for r in git_server.requests] == ["GET", "POST"]


def test_git_server_with_auth_refuses_anonymous_clients() -> None:
    server = GitHttpServer(auth=("bot", "s3cret-token")).start()
    try:
        url = server.create_repo("private")
        anonymous = subprocess.run(
            ["git", "ls-remote", url],
            capture_output=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        assert anonymous.returncode != 0
        authed = url.replace("http://", "http://bot:s3cret-token@")
        assert subprocess.run(["git", "ls-remote", authed], capture_output=True).returncode == 0
    finally:
        server.stop()


def test_broker_is_a_real_redis_server() -> None:
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert client.ping() is True
    assert client.info("server")["redis_version"]


@pytest.mark.django_db
def test_suite_runs_on_the_database_the_test_bed_chose() -> None:
    expected = os.environ.get("DATABASE_URL", "sqlite")
    vendor = "sqlite" if expected.startswith("sqlite") else "postgresql"
    assert connection.vendor == vendor


@pytest.mark.django_db(transaction=True)
def test_a_task_round_trips_through_a_worker_process(celery_worker_process: object) -> None:
    Repository.objects.create(key="demo", provider="git", url="file:///tmp/demo.git")

    answer = ping.delay().get(timeout=30)

    # The worker is another process and reads the same (test) database.
    assert answer["repositories"] == 1
    assert answer["hostname"]
