"""One django-celery-beat schedule per repository, kept in step with the Repository row.

Beat reads schedules from the database, so a repository added in the admin, by the
config loader or through the API starts being polled without restarting anything.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from syncworker.models import Deployment, Repository, Service

POLL_TASK = "syncworker.poll_repository"
DRIFT_TASK = "syncworker.check_drift"


def schedule_name(repository: Repository) -> str:
    return f"gitops-poll:{repository.pk}"


def _every(seconds: int) -> IntervalSchedule:
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=seconds, period=IntervalSchedule.SECONDS
    )
    return interval


def _upsert(
    name: str, desired: dict[str, Any], *, start_time: datetime | None = None
) -> PeriodicTask:
    """Create the schedule, or write only the fields that differ (a save wakes beat);
    ``start_time`` is set on creation and whenever the interval changes."""
    task = PeriodicTask.objects.filter(name=name).first()
    if start_time is not None and (task is None or task.interval_id != desired["interval"].pk):
        desired = {**desired, "start_time": start_time}
    if task is None:
        return PeriodicTask.objects.create(name=name, **desired)
    changed = [field for field, value in desired.items() if getattr(task, field) != value]
    if changed:
        for field in changed:
            setattr(task, field, desired[field])
        task.save()
    return task


def sync_schedule(repository: Repository) -> PeriodicTask:
    """Create or update the repository's poll schedule; disabled with the repository."""
    desired = {
        "task": POLL_TASK,
        "interval": _every(repository.poll_interval),
        "args": json.dumps([repository.pk]),
        "kwargs": json.dumps({"trigger": Deployment.Trigger.POLL.value}),
        "queue": "poll",
        "enabled": repository.enabled,
        # A poll older than one interval is useless: the next one is already due.
        "expire_seconds": repository.poll_interval,
        "description": f"Poll {repository.full_name} ({repository.branch})",
    }
    # A start time makes beat run a new schedule at once, as Argo CD and Flux sync a new
    # source, instead of one interval after it was created (django-celery-beat's default).
    return _upsert(schedule_name(repository), desired, start_time=timezone.now())


def remove_schedule(repository_pk: int) -> None:
    PeriodicTask.objects.filter(name=f"gitops-poll:{repository_pk}").delete()


def drift_schedule_name(service_pk: int) -> str:
    return f"gitops-drift:{service_pk}"


def drift_phase(service_pk: int, interval: int) -> int:
    """Seconds by which the service's checks are offset within the interval: spread
    evenly over services (Knuth's multiplicative hash), so a thousand services with one
    interval do not all check at once."""
    return (service_pk * 2654435761) % (2**32) * interval // (2**32)


def sync_drift_schedule(service: Service) -> PeriodicTask:
    """Create or update the service's drift check; disabled with the service. A new
    interval starts at the service's phase within it."""
    desired = {
        "task": DRIFT_TASK,
        "interval": _every(service.drift_interval),
        "args": json.dumps([service.pk]),
        "queue": "drift",
        "enabled": service.enabled,
        "expire_seconds": service.drift_interval,
        "description": f"Drift check of {service.name}",
    }
    start = timezone.now() + timedelta(seconds=drift_phase(service.pk, service.drift_interval))
    return _upsert(drift_schedule_name(service.pk), desired, start_time=start)


def remove_drift_schedule(service_pk: int) -> None:
    PeriodicTask.objects.filter(name=drift_schedule_name(service_pk)).delete()


SWEEP_NAME = "gitops-requeue-stuck"
SWEEP_SECONDS = 15


def ensure_sweep_schedule() -> None:
    """The frequent sweep for deployments whose worker died or whose message was lost."""
    every = _every(SWEEP_SECONDS)
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
