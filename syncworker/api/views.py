"""REST endpoints (DRF). Thin: the actions call syncworker.pipeline.actions, edits and
deletes of configuration rows pass syncworker.guards."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from syncworker import guards
from syncworker.api.filters import filter_deployments
from syncworker.api.serializers import (
    ActionResultSerializer,
    ClusterSerializer,
    DeploymentDetailSerializer,
    DeploymentSerializer,
    RepositorySerializer,
    ServiceDiffSerializer,
    ServiceSerializer,
)
from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline import actions, diffing

RETRY_AFTER_SECONDS = 30


def _action_error(exc: actions.ActionError) -> Response:
    return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


def _queue_unavailable(what: str) -> Response:
    return Response(
        {
            "detail": f"{what} not queued: the task broker (Redis) is unreachable; "
            "nothing was recorded, try again once it is back"
        },
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class GuardedViewSet(viewsets.ModelViewSet):
    """409, saying why, for an edit of a field the config file sets and for deleting a
    row the file names or that is in use (``syncworker.guards``, as in the admin)."""

    def perform_update(self, serializer: BaseSerializer) -> None:
        # The stored row, not yet changed: save() applies validated_data afterwards.
        row: Any = serializer.instance
        try:
            guards.refuse_config_edit(row, serializer.validated_data)
        except guards.Refused as exc:
            raise Conflict(str(exc)) from None
        super().perform_update(serializer)

    def perform_destroy(self, instance: Any) -> None:
        try:
            guards.delete(instance)
        except guards.Refused as exc:
            raise Conflict(str(exc)) from None


class RepositoryViewSet(GuardedViewSet):
    queryset = Repository.objects.all()
    serializer_class = RepositorySerializer

    @extend_schema(request=None, responses={202: ActionResultSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        """Poll the repository now, as a push webhook would."""
        try:
            actions.sync_now(self.get_object())
        except actions.ActionError as exc:
            return _action_error(exc)
        except actions.QueueUnavailable:
            return _queue_unavailable("sync")
        return Response({"detail": "sync queued"}, status=status.HTTP_202_ACCEPTED)


class ServiceViewSet(GuardedViewSet):
    queryset = Service.objects.select_related("repository", "cluster")
    serializer_class = ServiceSerializer

    @extend_schema(request=None, responses={202: ActionResultSerializer})
    @action(detail=True, methods=["post"])
    def redeploy(self, request: Request, pk: str | None = None) -> Response:
        """Deploy the service again at its branch head, even if nothing changed."""
        try:
            actions.redeploy(self.get_object())
        except actions.ActionError as exc:
            return _action_error(exc)
        except actions.QueueUnavailable:
            return _queue_unavailable("redeploy")
        return Response({"detail": "redeploy queued"}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("commit", str, description="commit SHA (default: branch head)")
        ],
        responses={200: ServiceDiffSerializer},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk: str | None = None) -> Response:
        """What a sync would change on the cluster, per object (a server-side dry run).
        503 when the cluster cannot be reached, 422 when the commit cannot be rendered."""
        commit = request.query_params.get("commit", "").strip().lower() or None
        if commit is not None and not diffing.is_commit_sha(commit):
            raise ValidationError({"commit": "a commit SHA: 7 to 64 hexadecimal digits"})
        try:
            result = diffing.diff_service(self.get_object(), commit)
        except diffing.DiffFailed as exc:
            code = status.HTTP_503_SERVICE_UNAVAILABLE if exc.unreachable else 422
            return Response({"detail": str(exc)}, status=code)
        return Response(ServiceDiffSerializer(result.as_json()).data)


class ClusterViewSet(GuardedViewSet):
    queryset = Cluster.objects.all()
    serializer_class = ClusterSerializer


@extend_schema(
    parameters=[
        OpenApiParameter("service", str, description="service id or name"),
        OpenApiParameter("status", str, enum=[s.value for s in Deployment.Status]),
        OpenApiParameter("since", str, description="queued at or after (ISO 8601)"),
        OpenApiParameter("until", str, description="queued before (ISO 8601)"),
    ]
)
class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployment history, newest first."""

    queryset = Deployment.objects.select_related("service").defer("bundle")

    def get_serializer_class(self) -> type[BaseSerializer]:
        return DeploymentDetailSerializer if self.action == "retrieve" else DeploymentSerializer

    def get_queryset(self) -> QuerySet[Deployment]:
        if self.action == "retrieve":
            return Deployment.objects.select_related("service")
        return filter_deployments(super().get_queryset(), self.request.query_params)

    @extend_schema(request=None, responses={202: DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        """Re-apply exactly the bundle of this (successful) deployment."""
        try:
            deployment = actions.rollback(self.get_object())
        except actions.ActionError as exc:
            return _action_error(exc)
        except actions.QueueUnavailable:
            return _queue_unavailable("rollback")
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)
