"""GitHub push webhooks: a push to a watched branch polls that repository at once.

The signature is verified before anything else is trusted: HMAC-SHA256 of the raw body
with the repository's webhook secret, compared in constant time. There is no SHA-1
fallback: a request signed only with ``X-Hub-Signature`` is rejected. Polling stays the
safety net, so a lost webhook delays a deployment by at most one poll interval.

``POST /v1/webhooks/github/<key>`` names the repository in the URL (one webhook per
repository); ``POST /v1/webhooks/github`` finds it from the payload's
``repository.full_name`` or clone URL (an organisation-wide webhook).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from syncworker.models import Deployment, Repository
from syncworker.pipeline.actions import sync_now

log = logging.getLogger(__name__)
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    if not secret or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


def _candidates(key: str | None, payload: dict[str, Any]) -> list[Repository]:
    repos = Repository.objects.filter(enabled=True).exclude(webhook_secret="")
    if key is not None:
        return list(repos.filter(key=key))
    info = payload.get("repository") or {}
    full_name = str(info.get("full_name") or "")
    owner, _, name = full_name.partition("/")
    urls = {str(info.get(k) or "").removesuffix(".git") for k in ("clone_url", "html_url")}
    urls.discard("")
    found = [r for r in repos.filter(owner__iexact=owner, name__iexact=name)] if name else []
    found += [r for r in repos if r.url.removesuffix(".git") in urls and r not in found]
    return found


def _reject(status: int, reason: str, delivery: str) -> JsonResponse:
    log.warning("webhook rejected (%s): delivery %s", reason, delivery or "-")
    return JsonResponse({"detail": reason}, status=status)


@csrf_exempt
@require_POST
def github_webhook(request: HttpRequest, key: str | None = None) -> JsonResponse:
    delivery = request.headers.get("X-GitHub-Delivery", "")[:64]
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_BODY:
        return _reject(413, "payload too large", delivery)
    body = request.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return _reject(413, "payload too large", delivery)
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        return _reject(401, "missing X-Hub-Signature-256", delivery)
    try:
        # Parsed only to find whose secret to check; nothing in it is acted on before
        # the signature matches.
        payload = json.loads(body) if key is None else {}
    except ValueError:
        return _reject(400, "body is not JSON", delivery)
    repo = next(
        (
            r
            for r in _candidates(key, payload)
            if signature_valid(r.webhook_secret, body, signature)
        ),
        None,
    )
    if repo is None:
        return _reject(403, "signature does not match", delivery)

    event = request.headers.get("X-GitHub-Event", "")
    if event == "ping":
        return JsonResponse({"detail": "pong", "repository": repo.key})
    if event != "push":
        return JsonResponse({"detail": f"event {event!r} ignored"})
    try:
        payload = payload or json.loads(body)
    except ValueError:
        return _reject(400, "body is not JSON", delivery)
    ref = payload.get("ref")
    if ref != f"refs/heads/{repo.branch}":
        return JsonResponse({"detail": f"push to {ref!r} ignored: watching {repo.branch!r}"})
    sync_now(repo, trigger=Deployment.Trigger.WEBHOOK)
    log.info("webhook: push to %s %s, poll queued (delivery %s)", repo.key, ref, delivery)
    return JsonResponse({"detail": "poll queued", "repository": repo.key}, status=202)
