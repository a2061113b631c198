"""Fixtures over the real services of the test bed.

Redis and PostgreSQL are started by ``tests.support.testbed`` (the README's test command
runs the suite inside it); the Git server, Celery worker and kube-apiserver are started
here, once per session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.support.gitserver import GitHttpServer, WorkingCopy
from tests.support.procs import stop_process

pytest_plugins = ["tests.support.kube_fixtures", "tests.support.source_fixtures"]

ROOT = Path(__file__).resolve().parent.parent


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
def celery_worker_process(
    django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery worker`` process consuming every queue, on the test database."""
    from gitops_site.celery import app

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        database_url = _worker_database_url()
    log_path = ROOT / "var" / "test-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": database_url}
    name = f"test-{uuid.uuid4().hex[:6]}@%h"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gitops_site",
            "worker",
            "-n",
            name,
            "-Q",
            "default,poll,fetch,apply",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(60):
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
            if app.control.ping(timeout=0.5):
                break
        else:
            raise RuntimeError(f"celery worker did not answer: {log_path.read_text()[-3000:]}")
        yield proc
    finally:
        stop_process(proc, timeout=20)
