"""A worker keeps its PostgreSQL connection from task to task for as long as
``DATABASE_CONN_MAX_AGE`` says, as the web process does between requests (Celery's Django
fix-up alone would open a new one for every task)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from syncworker.tasks import ping
from tests.support.workers import start_worker

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "connections-test"
# The worker's sessions carry this name, so other tests' processes opening sessions
# meanwhile (a worker of a module before, a live server's threads) are not counted.
APPLICATION = "gitops-connections-test"


def worker_backends() -> set[tuple[int, object]]:
    """The test worker's sessions on the test database: (pid, start) of each."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND backend_type = 'client backend'",
            [APPLICATION],
        )
        return set(cursor.fetchall())


def pings(count: int) -> None:
    for _ in range(count):
        answer = ping.apply_async(queue=QUEUE, ignore_result=False).get(timeout=30)
        assert answer["repositories"] == 0  # it did read the database


def one_process_worker(url: str, **env: str) -> Iterator[set[tuple[int, object]]]:
    """Yields the sessions that were there before the worker started (other tests'
    processes may still hold some); the worker's are the others."""
    before = worker_backends()
    url = f"{url}?application_name={APPLICATION}"
    worker = start_worker(url, queues=QUEUE, concurrency=1, name="conn", env=env)
    yield before
    worker.stop()


@pytest.fixture
def earlier(worker_database_url: str) -> Iterator[set[tuple[int, object]]]:
    # The test bed sets 0 for every process it starts; a deployment keeps the default.
    yield from one_process_worker(worker_database_url, DATABASE_CONN_MAX_AGE="60")


@pytest.fixture
def earlier_without_reuse(worker_database_url: str) -> Iterator[set[tuple[int, object]]]:
    yield from one_process_worker(worker_database_url, DATABASE_CONN_MAX_AGE="0")


def test_a_worker_reuses_its_database_connection_across_tasks(
    earlier: set[tuple[int, object]],
) -> None:
    pings(1)
    sessions = worker_backends() - earlier
    pings(5)
    assert len(sessions) == 1, sessions
    assert worker_backends() - earlier == sessions, "a task opened a new connection"


def test_a_worker_closes_its_connection_after_each_task_when_told_not_to_keep_it(
    earlier_without_reuse: set[tuple[int, object]],
) -> None:
    pings(3)
    assert worker_backends() - earlier_without_reuse == set()
