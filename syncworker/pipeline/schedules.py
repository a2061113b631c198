"""One django-celery-beat schedule per repository, kept in step with the Repository row.

Beat reads schedules from the database, so a repository added in the admin, by the
config loader or through the API starts being polled without restarting anything.
"""

from __future__ import annotations

import json

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from syncworker.models import Deployment, Repository

POLL_TASK = "syncworker.poll_repository"


def schedule_name(repository: Repository) -> str:
    return f"gitops-poll:{repository.pk}"


def sync_schedule(repository: Repository) -> PeriodicTask:
    """Create or update the repository's poll schedule; disabled with the repository."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=repository.poll_interval, period=IntervalSchedule.SECONDS
    )
    desired = {
        "task": POLL_TASK,
        "interval": interval,
        "args": json.dumps([repository.pk]),
        "kwargs": json.dumps({"trigger": Deployment.Trigger.POLL.value}),
        "queue": "poll",
        "enabled": repository.enabled,
        # A poll older than one interval is useless: the next one is already due.
        "expire_seconds": repository.poll_interval,
        "description": f"Poll {repository.full_name} ({repository.branch})",
    }
    task, created = PeriodicTask.objects.get_or_create(
        name=schedule_name(repository), defaults=desired
    )
    if not created:
        changed = [name for name, value in desired.items() if getattr(task, name) != value]
        if changed:
            for name in changed:
                setattr(task, name, desired[name])
            task.save()
    return task


def remove_schedule(repository_pk: int) -> None:
    PeriodicTask.objects.filter(name=f"gitops-poll:{repository_pk}").delete()


SWEEP_NAME = "gitops-requeue-stuck"
SWEEP_SECONDS = 15


def ensure_sweep_schedule() -> None:
    """The frequent sweep for deployments whose worker died or whose message was lost."""
    every, _ = IntervalSchedule.objects.get_or_create(
        every=SWEEP_SECONDS, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.update_or_create(
        name=SWEEP_NAME,
        defaults={
            "task": "syncworker.requeue_stuck",
            "interval": every,
            "queue": "default",
            "expire_seconds": SWEEP_SECONDS,
            "description": "Resume deployments whose worker died or whose message was lost",
        },
    )
