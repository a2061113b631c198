"""``GET /v1/gitops/repos``: the seed's status API, field for field."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from syncworker.selectors import iso_utc, repositories_with_last_deployment


def repos_status() -> dict[str, Any]:
    repos = []
    for repo in repositories_with_last_deployment():
        names = [service.name for service in repo.enabled_services]  # type: ignore[attr-defined]
        repos.append(
            {
                "repo": repo.full_name,
                "url": repo.url,
                "branch": repo.branch,
                "last_deploy_time": iso_utc(repo.last_deploy_time),  # type: ignore[attr-defined]
                "last_commit_id": repo.last_commit_id or "",  # type: ignore[attr-defined]
                "services": names,
                "service_count": len(names),
            }
        )
    return {"count": len(repos), "repos": repos, "timestamp": iso_utc(timezone.now())}


class StatusReadable(BasePermission):
    """Public by default (the seed's status API is read by dashboards and scripts);
    ``GITOPS_STATUS_API_PUBLIC=0`` limits it to staff sessions and API tokens."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.GITOPS["STATUS_API_PUBLIC"]:
            return True
        return bool(request.user and request.user.is_staff)


class ReposStatusView(APIView):
    permission_classes = [StatusReadable]
    renderer_classes = [JSONRenderer]

    def get(self, request: Request) -> Response:
        return Response(repos_status())
