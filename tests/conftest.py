"""Fixtures over the real services of the test bed.

Redis and PostgreSQL are started by ``tests.support.testbed`` (the README's test command
runs the suite inside it); the Git server and kube-apiserver are started here, once per
session, and a Celery worker once per test module that asks for one.

No test reaches off the machine: the network guard (tests/support/netguard.py) is
installed in this process and in every worker started here, and a test during which
anything was refused fails.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.support import netguard
from tests.support.gitserver import GitHttpServer, WorkingCopy
from tests.support.workers import WorkerProcess, drain_queues, start_worker

pytest_plugins = [
    "tests.support.kube_fixtures",
    "tests.support.source_fixtures",
    "tests.support.e2e",
    "tests.support.broker_fixtures",
]


def pytest_configure(config: pytest.Config) -> None:
    # Before any worker starts, so that the workers inherit where to log refusals.
    handle, path = tempfile.mkstemp(prefix="gitops-netguard-", suffix=".log")
    os.close(handle)
    os.environ[netguard.LOG_ENV] = path
    netguard.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.pop(netguard.LOG_ENV, "")
    if path:
        os.unlink(path)


@pytest.fixture(autouse=True)
def _traffic_stays_on_the_machine() -> Iterator[None]:
    yield
    refused = netguard.take_refusals()
    if refused:
        pytest.fail(
            "refused traffic off the machine (pid host:port): " + "; ".join(refused),
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def _close_stray_database_sessions(
    django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> Iterator[None]:
    """The live server's request threads can keep a connection to the test database
    after the browser is gone; end them so the database can be dropped at the end."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def staff_api() -> Any:
    """A REST client authenticated by the token of a staff user (imports here: this
    module loads before pytest-django has set Django up)."""
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    user = User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def allow_file_repositories(settings: Any) -> Path:
    """file:// repositories are refused unless the operator names their root; these
    tests name /srv."""
    root = Path("/srv")
    settings.GITOPS = {**settings.GITOPS, "FILE_REPOSITORY_ROOT": root}
    return root


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitHttpServer]:
    server = GitHttpServer().start()
    yield server
    server.stop()


@pytest.fixture
def git_repo(git_server: GitHttpServer) -> Iterator[WorkingCopy]:
    """A new bare repository on the Git server and a working copy that pushes to it."""
    url = git_server.create_repo(f"repo-{uuid.uuid4().hex[:8]}")
    copy = WorkingCopy(url)
    yield copy
    copy.cleanup()


def _worker_database_url() -> str:
    """The URL of the test database pytest-django created, for processes we start."""
    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError(
            "worker-process tests need the PostgreSQL test bed (a worker cannot share an "
            "in-memory SQLite database); run them through tests.support.testbed"
        )
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


@pytest.fixture(scope="session")
def worker_database_url(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> str:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        return _worker_database_url()


@pytest.fixture(scope="module")
def celery_worker_process(worker_database_url: str) -> Iterator[WorkerProcess]:
    """A real ``celery worker`` process consuming every queue, on the test database, for
    one test module: it starts on empty queues and is gone before the next module runs,
    so it never consumes what other modules publish (their repositories may name
    api.github.com)."""
    drain_queues()
    worker = start_worker(worker_database_url, queues="default,poll,fetch,apply,health,drift")
    yield worker
    worker.stop()
    drain_queues()
