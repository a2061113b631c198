"""GitHub push webhooks: a push to a watched branch polls that repository at once.

The signature is verified before anything else is trusted: HMAC-SHA256 of the raw body
with the repository's webhook secret, compared in constant time. There is no SHA-1
fallback: a request signed only with ``X-Hub-Signature`` is rejected. Polling stays the
safety net, so a lost webhook delays a deployment by at most one poll interval.

``POST /v1/webhooks/github/<key>`` names the repository in the URL (one webhook per
repository); ``POST /v1/webhooks/github`` finds it from the payload's
``repository.full_name`` or clone URL (an organisation-wide webhook).

A body that is not a JSON object (or whose ``repository`` is not one) is a 400 naming
what is wrong; a broker that cannot take the poll is a 503, so GitHub records a failed
delivery that can be redelivered (and polling still picks the push up later).
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
from syncworker.pipeline.actions import QueueUnavailable, sync_now
from syncworker.yamlload import type_name

log = logging.getLogger(__name__)
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    if not secret or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


class BadPayload(ValueError):
    """The body cannot be a GitHub event; the message says why."""


def parse_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise BadPayload("body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadPayload(f"body must be a JSON object, not {type_name(payload)}")
    return payload


def _text(info: dict[str, Any], key: str) -> str:
    value = info.get(key)
    return value if isinstance(value, str) else ""


def _repository_info(payload: dict[str, Any]) -> dict[str, Any]:
    info = payload.get("repository")
    if not isinstance(info, dict):
        raise BadPayload(
            f"'repository' must be an object with full_name or clone_url, not {type_name(info)} "
            "(or name the repository in the URL: /v1/webhooks/github/<key>)"
        )
    return info


def _candidates(key: str | None, payload: dict[str, Any]) -> list[Repository]:
    repos = Repository.objects.filter(enabled=True).exclude(webhook_secret="")
    if key is not None:
        return list(repos.filter(key=key))
    info = _repository_info(payload)
    owner, _, name = _text(info, "full_name").partition("/")
    urls = {_text(info, k).removesuffix(".git") for k in ("clone_url", "html_url")}
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
    declared = request.headers.get("Content-Length") or "0"
    if not declared.isascii() or not declared.isdigit():
        return _reject(400, "Content-Length is not a number", delivery)
    if int(declared) > MAX_BODY:
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
        payload = parse_payload(body) if key is None else {}
        candidates = _candidates(key, payload)
    except BadPayload as exc:
        return _reject(400, str(exc), delivery)
    repo = next((r for r in candidates if signature_valid(r.webhook_secret, body, signature)), None)
    if repo is None:
        return _reject(403, "signature does not match", delivery)

    event = request.headers.get("X-GitHub-Event", "")
    if event == "ping":
        return JsonResponse({"detail": "pong", "repository": repo.key})
    if event != "push":
        return JsonResponse({"detail": f"event {event!r} ignored"})
    try:
        payload = payload or parse_payload(body)
    except BadPayload as exc:
        return _reject(400, str(exc), delivery)
    ref = payload.get("ref")
    if not isinstance(ref, str):
        return _reject(400, "'ref' must be a string (refs/heads/<branch>)", delivery)
    if ref != f"refs/heads/{repo.branch}":
        return JsonResponse({"detail": f"push to {ref!r} ignored: watching {repo.branch!r}"})
    try:
        sync_now(repo, trigger=Deployment.Trigger.WEBHOOK)
    except QueueUnavailable:
        return _reject(503, "poll not queued: the task broker (Redis) is unreachable", delivery)
    log.info("webhook: push to %s %s, poll queued (delivery %s)", repo.key, ref, delivery)
    return JsonResponse({"detail": "poll queued", "repository": repo.key}, status=202)
