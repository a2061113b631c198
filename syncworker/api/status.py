"""``GET /v1/gitops/repos``: the seed's status API, field for field."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from syncworker.selectors import iso_utc, last_deployment, repositories_with_services


def repos_status() -> dict[str, Any]:
    repos = []
    for repo in repositories_with_services():
        services = repo.enabled_services  # type: ignore[attr-defined]
        deployed_at, commit = last_deployment(services)
        names = [service.name for service in services]
        repos.append(
            {
                "repo": repo.full_name,
                "url": repo.url,
                "branch": repo.branch,
                "last_deploy_time": iso_utc(deployed_at),
                "last_commit_id": commit,
                "services": names,
                "service_count": len(names),
            }
        )
    return {"count": len(repos), "repos": repos, "timestamp": iso_utc(timezone.now())}


_cache_lock = threading.Lock()
_cached: tuple[float, bytes] | None = None


def repos_status_json() -> bytes:
    """The answer, rendered at most once per GITOPS_STATUS_CACHE_SECONDS per process:
    dashboards poll this endpoint, and at 1,000 repositories rendering costs tens of
    milliseconds while serving stored bytes costs microseconds."""
    global _cached
    ttl = settings.GITOPS["STATUS_CACHE_SECONDS"]
    now = time.monotonic()
    with _cache_lock:
        if ttl and _cached is not None and _cached[0] > now:
            return _cached[1]
    body = json.dumps(repos_status(), separators=(",", ":")).encode()
    with _cache_lock:
        _cached = (now + ttl, body)
    return body


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

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(repos_status_json(), content_type="application/json")
