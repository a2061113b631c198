"""Keep each repository's poll schedule and each service's drift schedule in step with
its row, whoever changed it."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from syncworker.models import Repository, Service
from syncworker.pipeline.schedules import (
    ensure_sweep_schedule,
    remove_drift_schedule,
    remove_schedule,
    sync_drift_schedule,
    sync_schedule,
)

# Saves that touch only poll state (last commit, errors) leave the schedule alone.
SCHEDULE_FIELDS = frozenset({"poll_interval", "enabled", "key", "owner", "name", "branch"})
DRIFT_SCHEDULE_FIELDS = frozenset({"drift_interval", "enabled", "name"})


@receiver(post_save, sender=Repository, dispatch_uid="syncworker.repository_schedule")
def repository_saved(sender: type[Repository], instance: Repository, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if kwargs.get("raw") or (update_fields and not update_fields & SCHEDULE_FIELDS):
        return
    sync_schedule(instance)


@receiver(post_delete, sender=Repository, dispatch_uid="syncworker.repository_unschedule")
def repository_deleted(sender: type[Repository], instance: Repository, **kwargs: Any) -> None:
    remove_schedule(instance.pk)


@receiver(post_save, sender=Service, dispatch_uid="syncworker.service_drift_schedule")
def service_saved(sender: type[Service], instance: Service, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if kwargs.get("raw") or (update_fields and not update_fields & DRIFT_SCHEDULE_FIELDS):
        return
    sync_drift_schedule(instance)


@receiver(post_delete, sender=Service, dispatch_uid="syncworker.service_drift_unschedule")
def service_deleted(sender: type[Service], instance: Service, **kwargs: Any) -> None:
    remove_drift_schedule(instance.pk)


def schedule_sweep(**kwargs: Any) -> None:
    """After migrate: make sure beat runs the stuck-deployment sweep, and every service
    (one from before drift checks existed too) its drift check."""
    ensure_sweep_schedule()
    for service in Service.objects.all():
        sync_drift_schedule(service)
