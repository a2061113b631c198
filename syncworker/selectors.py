"""Reads shared by the status API, the REST API and the admin."""

from __future__ import annotations

from datetime import datetime, timezone

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from syncworker.models import Deployment, Repository, Service


def iso_utc(moment: datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z``, or the empty string the seed asks for."""
    if moment is None:
        return ""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def repositories_with_last_deployment() -> QuerySet[Repository]:
    """Enabled repositories, each with its enabled services prefetched and annotated
    with its newest successful deployment: two queries whatever their number."""
    newest = Deployment.objects.filter(
        service__repository=OuterRef("pk"), status=Deployment.Status.SUCCEEDED
    ).order_by("-finished_at", "-pk")
    return (
        Repository.objects.filter(enabled=True)
        .annotate(
            last_deploy_time=Subquery(newest.values("finished_at")[:1]),
            last_commit_id=Subquery(newest.values("commit_sha")[:1]),
        )
        .prefetch_related(
            Prefetch(
                "services",
                queryset=Service.objects.filter(enabled=True).only("name", "repository_id"),
                to_attr="enabled_services",
            )
        )
        .order_by("key")
    )
