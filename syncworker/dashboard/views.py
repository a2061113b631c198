"""The dashboard's pages: the overview at ``/`` and one page per service, with the
fragments htmx polls, and the buttons' actions. Thin: reads go through
syncworker.selectors, actions through syncworker.pipeline.actions (as in the admin and the
API), presentation through rows/presenting.

A fragment is the page's live region re-rendered alone; it is chosen by the htmx target
(``HX-Target``), so the same URL serves the page, its poll and a history restore.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import trigger_client_event

from syncworker.dashboard.access import can_act, readable, staff_only
from syncworker.dashboard.forms import OverviewFilter
from syncworker.dashboard.presenting import commit_url, deployment_state, repository_web_url
from syncworker.dashboard.rows import history_row, service_row
from syncworker.dashboard.vocabulary import HEALTH, STATES, SYNC, health_state, sync_state
from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import actions, diffing
from syncworker.selectors import (
    attach_last_deployments,
    failing_repositories,
    overview_counts,
    service_detail,
    service_history,
    service_inventory,
)

SERVICES_PER_PAGE = 50
DEPLOYMENTS_PER_PAGE = 20
INVENTORY_SHOWN = 500
# Seconds between polls of a live region: quick while a deployment is on its way.
POLL_IDLE, POLL_ACTIVE = 10, 2
POLL_OVERVIEW = 5
CHANGED_EVENT = "gitops:changed"  # sent after an action: live regions refresh at once


def _fragment(request: HttpRequest, target: str) -> bool:
    htmx = request.htmx  # type: ignore[attr-defined]
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target


@readable
@vary_on_headers("HX-Request", "HX-Target")
def overview(request: HttpRequest) -> HttpResponse:
    form = OverviewFilter(request.GET)
    context: dict[str, Any] = {
        "form": form,
        "selects": form.selects(),
        "poll_seconds": POLL_OVERVIEW,
        "nav": "overview",
    }
    if not form.is_valid():
        context["filter_error"] = form.error_text()
        status = 400
    else:
        services, unfiltered = form.services()
        page = Paginator(services, SERVICES_PER_PAGE).get_page(request.GET.get("page"))
        listed = list(page.object_list)
        attach_last_deployments(listed)
        counts = overview_counts(unfiltered)
        rows = [service_row(service) for service in listed]
        context.update(
            page=page,
            groups=[(repo, list(group)) for repo, group in groupby(rows, lambda r: r.repository)],
            filtered=any(form.cleaned_data.values()),
            # Each facet shown worst first, as its table is ordered.
            facets=[
                {
                    "name": name,
                    "label": label,
                    "counts": [(s, counts[name][key]) for key, s in table.items()],
                    "selected": form.cleaned_data.get(name, ""),
                }
                for name, label, table in (
                    ("status", "Deployments", STATES),
                    ("health", "Health", HEALTH),
                    ("sync", "Sync", SYNC),
                )
            ],
            total=sum(counts["status"].values()),
            failing_repositories=failing_repositories(),
            can_act=can_act(request.user),
        )
        status = 200
    template = "dashboard/overview.html"
    if _fragment(request, "services-live"):
        template = "dashboard/_services.html"
    return render(request, template, context, status=status)


@readable
@vary_on_headers("HX-Request", "HX-Target")
def service_page(request: HttpRequest, name: str) -> HttpResponse:
    service = service_detail(name)
    if service is None:
        raise Http404(f"unknown service {name!r}")
    if _fragment(request, "service-inventory"):
        return render(request, "dashboard/_inventory.html", _inventory_context(service))
    history = Paginator(service_history(service), DEPLOYMENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    deployments = list(history.object_list)
    if history.number == 1:
        newest = deployments[0] if deployments else None
    else:
        newest = service_history(service).first()
    state = deployment_state(newest.status if newest else None)
    context = {
        "service": service,
        "health": health_state(service.health),
        "sync": sync_state(service.sync_status),
        "repository": service.repository,
        "repository_url": repository_web_url(service.repository),
        "applied_link": commit_url(service.repository, service.last_applied_commit),
        "state": state,
        "newest": newest,
        "history": history,
        "rows": [history_row(service.repository, d) for d in deployments],
        "can_act": can_act(request.user),
        "poll_seconds": POLL_ACTIVE if state.active else POLL_IDLE,
    }
    if _fragment(request, "service-live"):
        return render(request, "dashboard/_service_live.html", context)
    context.update(_inventory_context(service))
    return render(request, "dashboard/service.html", context)


@staff_only
def service_diff(request: HttpRequest, name: str) -> HttpResponse:
    """The pending diff (what a sync at the branch head would change), as a fragment the
    service page loads after it is shown: it asks Git and the cluster, which can be slow
    or down. Staff only, as ``/api/services/{id}/diff/`` is: it shows the manifests
    (Secret values masked by the diff itself)."""
    service = service_detail(name)
    if service is None:
        raise Http404(f"unknown service {name!r}")
    context: dict[str, Any] = {"service": service}
    try:
        context["diff"] = diffing.diff_service(service)
    except diffing.DiffFailed as exc:
        context.update(problem=str(exc), unreachable=exc.unreachable)
    return render(request, "dashboard/_diff.html", context)


def _inventory_context(service: Service) -> dict[str, Any]:
    objects = list(service_inventory(service)[: INVENTORY_SHOWN + 1])
    return {
        "service": service,
        "objects": objects[:INVENTORY_SHOWN],
        "objects_more": len(objects) > INVENTORY_SHOWN,
        "inventory_poll_seconds": 15,
    }


def _act(request: HttpRequest, action: Callable[[], str], back: str) -> HttpResponse:
    """Run an action; answer an htmx button with a message fragment (and tell the page's
    live regions to refresh), a plain form with a redirect back and a flash message."""
    try:
        done, level, status = action(), messages.SUCCESS, 202
    except actions.ActionError as exc:
        done, level, status = str(exc), messages.ERROR, 409
    except actions.QueueUnavailable:
        done = "Not queued: the task broker (Redis) is unreachable; try again once it is back."
        level, status = messages.ERROR, 503
    if request.htmx:  # type: ignore[attr-defined]
        response = render(
            request,
            "dashboard/_message.html",
            {"text": done, "level": "success" if level == messages.SUCCESS else "error"},
            status=status,
        )
        return trigger_client_event(response, CHANGED_EVENT) if status == 202 else response
    messages.add_message(request, level, done)
    return redirect(back)


@require_POST
@staff_only
def sync_repository(request: HttpRequest, key: str) -> HttpResponse:
    repository = get_object_or_404(Repository, key=key)

    def sync() -> str:
        actions.sync_now(repository)
        return f"Sync of {repository.key} queued: changed services will deploy."

    return _act(request, sync, reverse("dashboard:overview"))


@require_POST
@staff_only
def sync_service(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service.objects.select_related("repository"), name=name)

    def sync() -> str:
        actions.sync_now(service.repository)
        return f"Sync of {service.repository.key} queued: {service.name} deploys if it changed."

    return _act(request, sync, reverse("dashboard:service", args=[service.name]))


@require_POST
@staff_only
def redeploy_service(request: HttpRequest, name: str) -> HttpResponse:
    service = get_object_or_404(Service.objects.select_related("repository"), name=name)

    def redeploy() -> str:
        actions.redeploy(service)
        return f"Redeploy of {service.name} at the head of {service.repository.branch} queued."

    return _act(request, redeploy, reverse("dashboard:service", args=[service.name]))


@require_http_methods(["GET", "POST"])
@staff_only
def rollback(request: HttpRequest, name: str, deployment_id: int) -> HttpResponse:
    """GET: what would be re-applied, and a button to confirm; POST: roll back."""
    target = get_object_or_404(
        Deployment.objects.select_related("service__repository").defer("bundle"),
        pk=deployment_id,
        service__name=name,
    )
    back = reverse("dashboard:service", args=[name])
    if request.method == "POST":

        def roll_back() -> str:
            created = actions.rollback(Deployment.objects.get(pk=target.pk))
            return (
                f"Rollback queued as deployment #{created.pk}: the bundle of "
                f"#{target.pk} ({target.commit_sha[:12]}) is applied again."
            )

        return _act(request, roll_back, back)
    row = history_row(target.service.repository, target)
    return render(
        request,
        "dashboard/rollback.html",
        {"service": target.service, "row": row, "back": back},
        status=200 if row.can_roll_back else 409,
    )
