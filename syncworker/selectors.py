"""Reads shared by the status API, the REST API, the admin and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from django.db.models import Count, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from syncworker.models import AppliedObject, Cluster, Deployment, Repository, Service


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


# What the dashboard and the CLI show of a deployment in lists: everything but the bundle,
# the applied objects and the output, which can each be megabytes.
DEPLOYMENT_SUMMARY_FIELDS = (
    "id",
    "service_id",
    "cluster_id",
    "commit_sha",
    "trigger",
    "status",
    "reason",
    "rollback_of_id",
    "bundle_digest",
    "object_count",
    "error",
    "queued_at",
    "started_at",
    "finished_at",
)
NEVER_DEPLOYED = "never"
# Values of the overview's status filter: a deployment status, or no deployment yet.
OVERVIEW_STATUSES = (*Deployment.Status.values, NEVER_DEPLOYED)


def _newest_deployment(field: str) -> Subquery:
    return Subquery(
        Deployment.objects.filter(service=OuterRef("pk")).order_by("-id").values(field)[:1]
    )


def _cluster_name() -> Coalesce:
    """The name of the cluster a service deploys to: its own, else the default cluster's
    (a service without one follows the default, as the pipeline does)."""
    default = Cluster.objects.filter(is_default=True).values("name")[:1]
    return Coalesce(F("cluster__name"), Subquery(default))


def services_overview(
    *, search: str = "", repository: str = "", cluster: str = ""
) -> QuerySet[Service]:
    """Enabled services of enabled repositories (what the status API lists), with their
    repository and cluster joined, ``cluster_name`` (the default cluster's for a service
    without one) and ``last_deployment_id`` / ``last_status`` (None when never deployed)
    annotated from the newest deployment, ordered by repository and name.
    One query whatever the number of services; filter by status with
    ``with_overview_status``."""
    services = (
        Service.objects.filter(enabled=True, repository__enabled=True)
        .select_related("repository", "cluster")
        .only(
            "name",
            "k8s_yaml_dir",
            "namespace",
            "last_applied_commit",
            "last_applied_at",
            "health",
            "health_message",
            "sync_status",
            "sync_message",
            "drift_checked_at",
            "repository__key",
            "repository__provider",
            "repository__owner",
            "repository__name",
            "repository__url",
            "repository__api_url",
            "repository__branch",
            "repository__last_polled_at",
            "repository__last_error",
            "repository__consecutive_failures",
            "cluster__name",
        )
        .annotate(
            cluster_name=_cluster_name(),
            last_deployment_id=_newest_deployment("id"),
            last_status=_newest_deployment("status"),
        )
        .order_by("repository__key", "name")
    )
    if search:
        services = services.filter(name__icontains=search)
    if repository:
        services = services.filter(repository__key=repository)
    if cluster:
        services = services.filter(cluster_name=cluster)
    return services


def with_overview_status(services: QuerySet[Service], status: str) -> QuerySet[Service]:
    """Only the services whose newest deployment has ``status`` (``never``: none yet)."""
    # Q(): the type checker cannot see fields that services_overview annotates.
    if status == NEVER_DEPLOYED:
        return services.filter(Q(last_status__isnull=True))
    return services.filter(Q(last_status=status))


# The overview's three facets: the newest deployment's status, the service's health and
# its sync status (keys of overview_counts, and the filters' parameter names).
FACETS = ("status", "health", "sync")


def overview_counts(services: QuerySet[Service]) -> dict[str, dict[str, int]]:
    """How many of ``services_overview(...)`` are in each deployment status, health and
    sync status: one query (grouped by all three, summed here; at most 6 x 5 x 4 rows)."""
    rows = (
        services.order_by()
        .values_list(F("last_status"), "health", "sync_status")
        .annotate(n=Count("pk"))
    )
    counts = {
        "status": dict.fromkeys(OVERVIEW_STATUSES, 0),
        "health": dict.fromkeys(Service.Health.values, 0),
        "sync": dict.fromkeys(Service.SyncStatus.values, 0),
    }
    for status, health, sync, n in rows:
        for facet, key in zip(FACETS, (status or NEVER_DEPLOYED, health, sync), strict=True):
            counts[facet][key] = counts[facet].get(key, 0) + n
    return counts


def attach_last_deployments(services: Sequence[Service]) -> None:
    """Set ``last_deployment`` (a summary Deployment, or None) on each of ``services``
    (annotated by ``services_overview``): one query for all of them."""
    ids = [s.last_deployment_id for s in services if s.last_deployment_id]  # type: ignore[attr-defined]
    found = Deployment.objects.filter(pk__in=ids).only(*DEPLOYMENT_SUMMARY_FIELDS).in_bulk()
    for service in services:
        service.last_deployment = found.get(service.last_deployment_id)  # type: ignore[attr-defined]


def service_detail(name: str) -> Service | None:
    """One service by name, enabled or not, with its repository and cluster, and
    ``cluster_name`` as ``services_overview`` annotates it."""
    services = Service.objects.select_related("repository", "cluster")
    return services.annotate(cluster_name=_cluster_name()).filter(name=name).first()


def service_history(service: Service) -> QuerySet[Deployment]:
    """The service's deployments, newest first, without the large columns (bundle,
    applied objects, output) but with the pruned objects and the render's warnings
    (few, and bounded)."""
    return (
        service.deployments.select_related("cluster")
        .only(*DEPLOYMENT_SUMMARY_FIELDS, "pruned_objects", "warnings", "cluster__name")
        .order_by("-id")
    )


def service_inventory(service: Service) -> QuerySet[AppliedObject]:
    """The objects the service's last successful deployments put on clusters."""
    return (
        service.inventory.select_related("cluster")
        .only(
            "service_id",  # read by the related manager on every row
            "api_version",
            "kind",
            "namespace",
            "name",
            "cluster__name",
            "deployment_id",
        )
        .order_by("kind", "namespace", "name")
    )


def enabled_repository_keys() -> list[str]:
    keys = Repository.objects.filter(enabled=True).order_by("key").values_list("key", flat=True)
    return list(keys)


def cluster_names() -> list[str]:
    return list(Cluster.objects.order_by("name").values_list("name", flat=True))


def failing_repositories(limit: int = 20) -> list[Repository]:
    """Enabled repositories whose last polls failed, most failures first."""
    return list(
        Repository.objects.filter(enabled=True, consecutive_failures__gt=0)
        .only("key", "last_error", "consecutive_failures", "last_polled_at")
        .order_by("-consecutive_failures", "key")[:limit]
    )
