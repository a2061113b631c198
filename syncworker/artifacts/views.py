"""Public downloads: ``GET``/``HEAD /scripts/…``, ``/apps/…``, ``/configs/…``.

Pods fetch ``$DOWNLOAD_BASE_URL/scripts/<service>/init.sh`` and
``$DOWNLOAD_BASE_URL/apps/<service>/app.tar.gz`` at start-up, so no authentication.
Responses carry ``Cache-Control: no-cache`` with a strong ETag (the sha256 recorded at
upload): a pod always revalidates and sees a new version at once, and revalidation is a
cheap 304. Single byte ranges are honoured, so an interrupted download can resume.

In production the same files can be served by nginx or a CDN straight from
``GITOPS["ARTIFACTS_ROOT"]`` (deny hidden names there: they are uploads in progress).
Alternatively set ``GITOPS["ARTIFACTS_ACCEL_REDIRECT"]`` to a URL prefix, e.g.
``/_artifacts/`` with ``location /_artifacts/ { internal; alias <root>/; }``: Django
still validates the path and answers 404, but for an existing file it returns an empty
body with ``X-Accel-Redirect`` and nginx sends the file (ranges and conditionals too).
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from syncworker.artifacts.serving import (
    ArtifactNotFound,
    OpenedArtifact,
    RangeFile,
    RangeNotSatisfiable,
    guess_content_type,
    if_range_allows,
    locate_artifact,
    open_artifact,
    requested_range,
)


class ArtifactResponse(FileResponse):
    block_size = 64 * 1024


def _set_headers(response: HttpResponseBase, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        response.headers[name] = value


def _validator_headers(artifact: OpenedArtifact) -> dict[str, str]:
    return {
        "ETag": artifact.etag,
        "Last-Modified": http_date(artifact.last_modified),
        "Cache-Control": "no-cache",
        "Accept-Ranges": "bytes",
        # Uploaded files are served on the admin's origin: never let one run as a page.
        "Content-Security-Policy": "sandbox",
    }


def _accel_redirect(rel: str, prefix: str) -> HttpResponse:
    try:
        locate_artifact(rel)
    except ArtifactNotFound:
        raise Http404("No such artifact") from None
    response = HttpResponse(content_type=guess_content_type(rel))
    response.headers["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{quote(rel)}"
    response.headers["Cache-Control"] = "no-cache"
    return response


def _byte_range(request: HttpRequest, artifact: OpenedArtifact) -> tuple[int, int] | None:
    """The range to send, None for the whole file; RangeNotSatisfiable for a 416."""
    header = request.headers.get("Range", "")
    # RFC 9110 defines Range for GET only; a HEAD describes the whole file.
    if request.method != "GET" or not header:
        return None
    if_range = request.headers.get("If-Range", "")
    if not if_range_allows(if_range, etag=artifact.etag, last_modified=artifact.last_modified):
        return None
    return requested_range(header, artifact.size)


@csrf_exempt  # Read-only; without it a POST would meet the CSRF check (403), not a 405.
@require_safe
def serve_artifact(request: HttpRequest, kind: str, rest: str) -> HttpResponseBase:
    rel = f"{kind}/{rest}"
    if prefix := settings.GITOPS.get("ARTIFACTS_ACCEL_REDIRECT"):
        return _accel_redirect(rel, str(prefix))
    try:
        artifact = open_artifact(rel)
    except ArtifactNotFound:
        raise Http404("No such artifact") from None
    headers = _validator_headers(artifact)

    conditional = get_conditional_response(
        request, etag=artifact.etag, last_modified=artifact.last_modified
    )
    if conditional is not None:
        artifact.file.close()
        _set_headers(conditional, headers)
        return conditional

    try:
        byte_range = _byte_range(request, artifact)
    except RangeNotSatisfiable:
        artifact.file.close()
        response: HttpResponseBase = HttpResponse(status=416)
        _set_headers(response, headers)
        response.headers["Content-Range"] = f"bytes */{artifact.size}"
        return response

    if request.method == "HEAD":
        artifact.file.close()
        response = HttpResponse(content_type=artifact.content_type)
        length = artifact.size
    elif byte_range is None:
        response = ArtifactResponse(artifact.file, content_type=artifact.content_type)
        length = artifact.size
    else:
        first, last = byte_range
        length = last - first + 1
        response = ArtifactResponse(
            RangeFile(artifact.file, first, length), status=206, content_type=artifact.content_type
        )
        response.headers["Content-Range"] = f"bytes {first}-{last}/{artifact.size}"
    _set_headers(response, headers)
    response.headers["Content-Length"] = str(length)
    return response
