"""Reads shared by the status API, the REST API and the admin."""

from __future__ import annotations

from datetime import datetime, timezone

from django.db.models import Prefetch, QuerySet

from syncworker.models import Repository, Service


def iso_utc(moment: datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z``, or the empty string the seed asks for."""
    if moment is None:
        return ""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def repositories_with_services() -> QuerySet[Repository]:
    """Enabled repositories with their enabled services prefetched (name and what was
    last applied): two plain queries whatever their number, no per-row subquery."""
    services = Service.objects.filter(enabled=True).only(
        "name", "repository_id", "last_applied_at", "last_applied_commit"
    )
    return (
        Repository.objects.filter(enabled=True)
        .only("key", "owner", "name", "url", "branch")
        .prefetch_related(Prefetch("services", queryset=services, to_attr="enabled_services"))
        .order_by("key")
    )


def last_deployment(services: list[Service]) -> tuple[datetime | None, str]:
    """When the newest successful deployment among ``services`` finished, and its commit."""
    deployed = [s for s in services if s.last_applied_at is not None]
    if not deployed:
        return None, ""
    newest = max(deployed, key=lambda s: (s.last_applied_at, s.pk))
    return newest.last_applied_at, newest.last_applied_commit
