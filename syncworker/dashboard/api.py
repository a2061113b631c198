"""The dashboard's data as JSON, for the ``gitops`` command line: the overview, one
service with its history, one repository with its services. Read-only, readable under the
status API's rule (``GITOPS_STATUS_API_PUBLIC``), through the same selectors and filters
as the pages. The actions stay on the REST API (``/api/.../sync/`` and friends)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from syncworker.api.status import StatusReadable
from syncworker.dashboard.forms import OverviewFilter
from syncworker.dashboard.presenting import can_roll_back
from syncworker.dashboard.rows import ServiceRow, service_row
from syncworker.models import Deployment, Repository, Service
from syncworker.selectors import (
    attach_last_deployments,
    failing_repositories,
    overview_counts,
    service_detail,
    service_history,
    services_overview,
)

HISTORY_DEFAULT, HISTORY_MAX = 20, 200


class RepositoryBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Repository
        fields = [
            "id",
            "key",
            "branch",
            "last_polled_at",
            "last_seen_commit",
            "last_error",
            "consecutive_failures",
        ]
        read_only_fields = fields


class DeploymentBriefSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.SerializerMethodField()
    can_roll_back = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "status",
            "reason",
            "commit_sha",
            "trigger",
            "rollback_of",
            "object_count",
            "error",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "can_roll_back",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, obj: Deployment) -> float | None:
        return round(obj.duration.total_seconds(), 3) if obj.duration else None

    def get_can_roll_back(self, obj: Deployment) -> bool:
        return can_roll_back(obj)


class FailingRepositorySerializer(serializers.ModelSerializer):
    """A repository whose last polls failed, as the overview's "Polling fails" lists it."""

    class Meta:
        model = Repository
        fields = ["key", "consecutive_failures", "last_error", "last_polled_at"]
        read_only_fields = fields


class ServiceRowSerializer(serializers.Serializer):
    """One line of the overview (a ServiceRow)."""

    id = serializers.IntegerField(source="service.pk")
    name = serializers.CharField(source="service.name")
    repository = serializers.CharField(source="service.repository.key")
    repository_id = serializers.IntegerField(source="service.repository_id")
    cluster = serializers.CharField(source="service.cluster_name", default=None)
    state = serializers.CharField(source="state.key")
    state_label = serializers.CharField(source="state.label")
    reason_label = serializers.CharField(source="reason")
    commit = serializers.CharField()
    commit_url = serializers.CharField(source="commit_link")
    error_line = serializers.CharField()
    health = serializers.CharField(source="service.health")
    health_label = serializers.CharField(source="health.label")
    health_message = serializers.CharField(source="service.health_message")
    sync_status = serializers.CharField(source="service.sync_status")
    sync_label = serializers.CharField(source="sync.label")
    sync_message = serializers.CharField(source="service.sync_message")
    drift_checked_at = serializers.DateTimeField(source="service.drift_checked_at")
    last_applied_commit = serializers.CharField(source="service.last_applied_commit")
    last_applied_at = serializers.DateTimeField(source="service.last_applied_at")
    last_deployment = DeploymentBriefSerializer(source="deployment", allow_null=True)


def _rows(services: list[Service]) -> list[ServiceRow]:
    attach_last_deployments(services)
    return [service_row(service) for service in services]


class OverviewView(APIView):
    permission_classes = [StatusReadable]

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="newest deployment's status"),
            OpenApiParameter("health", str, enum=Service.Health.values),
            OpenApiParameter("sync", str, enum=Service.SyncStatus.values),
            OpenApiParameter("repository", str, description="repository key"),
            OpenApiParameter("cluster", str, description="cluster name"),
            OpenApiParameter("q", str, description="service name contains"),
        ],
        responses=inline_serializer(
            "Overview",
            {
                "count": serializers.IntegerField(),
                "counts": serializers.DictField(child=serializers.IntegerField()),
                "health_counts": serializers.DictField(child=serializers.IntegerField()),
                "sync_counts": serializers.DictField(child=serializers.IntegerField()),
                "services": ServiceRowSerializer(many=True),
                "failing_repositories": FailingRepositorySerializer(many=True),
                "timestamp": serializers.DateTimeField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        """Every service as the dashboard's first page shows it (all pages at once)."""
        form = OverviewFilter(request.query_params)
        if not form.is_valid():
            raise ValidationError(form.error_lists())
        services, unfiltered = form.services()
        rows = _rows(list(services))
        counts = overview_counts(unfiltered)
        # Why a service was never deployed, when its repository cannot be polled.
        key = form.cleaned_data.get("repository")
        failing = [r for r in failing_repositories() if not key or r.key == key]
        return Response(
            {
                "count": len(rows),
                "counts": counts["status"],
                "health_counts": counts["health"],
                "sync_counts": counts["sync"],
                "services": ServiceRowSerializer(rows, many=True).data,
                "failing_repositories": FailingRepositorySerializer(failing, many=True).data,
                "timestamp": timezone.now(),
            }
        )


def _service_or_404(name: str) -> Service:
    service = service_detail(name)
    if service is None:
        raise NotFound(f"unknown service {name!r}")
    return service


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(HISTORY_DEFAULT))
    if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_MAX:
        raise ValidationError({"limit": f"a whole number from 1 to {HISTORY_MAX}, not {raw!r}"})
    return int(raw)


class ServiceOverviewView(APIView):
    permission_classes = [StatusReadable]

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description=f"deployments, ≤ {HISTORY_MAX}")],
        responses=inline_serializer(
            "ServiceOverview",
            {
                "service": ServiceRowSerializer(),
                "repository": RepositoryBriefSerializer(),
                "deployments": DeploymentBriefSerializer(many=True),
            },
        ),
    )
    def get(self, request: Request, name: str) -> Response:
        """One service (enabled or not), its repository's poll state and its newest
        deployments, newest first."""
        service = _service_or_404(name)
        deployments = list(service_history(service)[: _limit(request)])
        service.last_deployment = deployments[0] if deployments else None  # type: ignore[attr-defined]
        service.last_status = deployments[0].status if deployments else None  # type: ignore[attr-defined]
        return Response(
            {
                "service": ServiceRowSerializer(service_row(service)).data,
                "repository": RepositoryBriefSerializer(service.repository).data,
                "deployments": DeploymentBriefSerializer(deployments, many=True).data,
            }
        )


class ServiceDeploymentView(APIView):
    permission_classes = [StatusReadable]

    @extend_schema(responses=DeploymentBriefSerializer)
    def get(self, request: Request, name: str, deployment_id: int) -> Response:
        """One deployment of the service (404 when it belongs to another service)."""
        service = _service_or_404(name)
        deployment = service_history(service).filter(pk=deployment_id).first()
        if deployment is None:
            raise NotFound(f"service {name!r} has no deployment {deployment_id}")
        return Response(DeploymentBriefSerializer(deployment).data)


class RepositoryOverviewView(APIView):
    permission_classes = [StatusReadable]

    @extend_schema(
        responses=inline_serializer(
            "RepositoryOverview",
            {
                "repository": RepositoryBriefSerializer(),
                "services": ServiceRowSerializer(many=True),
            },
        )
    )
    def get(self, request: Request, key: str) -> Response:
        """One repository's poll state and its enabled services as the overview shows them."""
        repository = Repository.objects.filter(key=key).first()
        if repository is None:
            raise NotFound(f"unknown repository {key!r}")
        rows = _rows(list(services_overview(repository=key)))
        return Response(
            {
                "repository": RepositoryBriefSerializer(repository).data,
                "services": ServiceRowSerializer(rows, many=True).data,
            }
        )
