"""Keep each repository's beat schedule in step with its row, whoever changed it."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from syncworker.models import Repository
from syncworker.pipeline.schedules import ensure_sweep_schedule, remove_schedule, sync_schedule

# Saves that touch only poll state (last commit, errors) leave the schedule alone.
SCHEDULE_FIELDS = frozenset({"poll_interval", "enabled", "key", "owner", "name", "branch"})


@receiver(post_save, sender=Repository, dispatch_uid="syncworker.repository_schedule")
def repository_saved(sender: type[Repository], instance: Repository, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if kwargs.get("raw") or (update_fields and not update_fields & SCHEDULE_FIELDS):
        return
    sync_schedule(instance)


@receiver(post_delete, sender=Repository, dispatch_uid="syncworker.repository_unschedule")
def repository_deleted(sender: type[Repository], instance: Repository, **kwargs: Any) -> None:
    remove_schedule(instance.pk)


def schedule_sweep(**kwargs: Any) -> None:
    """After migrate: make sure beat runs the stuck-deployment sweep."""
    ensure_sweep_schedule()
