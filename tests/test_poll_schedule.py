"""When beat first polls a repository: at once when it is added, not one poll interval
later (a real beat process with django-celery-beat's database scheduler)."""

from __future__ import annotations

import time

import pytest
from django_celery_beat.models import PeriodicTask

from syncworker.models import Repository
from tests.support.beat import beat_process
from tests.support.workers import drain_queues

pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_polls_a_new_repository_at_once_not_one_interval_later(
    worker_database_url: str,
) -> None:
    try:
        with beat_process(worker_database_url) as log:
            repo = Repository.objects.create(
                key="fresh", provider="git", url="file:///x.git", poll_interval=3600
            )
            sent = f"Sending due task gitops-poll:{repo.pk} "
            deadline = time.monotonic() + 40
            while sent not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
                time.sleep(0.5)
    finally:
        drain_queues()  # no worker here: the poll message must not reach a later test's


def test_an_interval_change_restarts_the_schedule_but_other_saves_leave_it_be() -> None:
    repo = Repository.objects.create(key="r", provider="git", url="file:///x.git")
    task = PeriodicTask.objects.get(name=f"gitops-poll:{repo.pk}")
    first = task.start_time
    assert first is not None

    repo.branch = "release"
    repo.save()
    assert PeriodicTask.objects.get(pk=task.pk).start_time == first
    repo.poll_interval = 120
    repo.save()
    assert PeriodicTask.objects.get(pk=task.pk).start_time > first
