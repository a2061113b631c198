"""Who may read the dashboard and who may act from it.

Reading follows the status API's rule (``GITOPS_STATUS_API_PUBLIC``: everyone, else staff),
through the very permission class the status API uses. Acting (sync, redeploy, roll back)
needs an active staff user, as the admin and the REST API's writes do.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from syncworker.api.status import StatusReadable

View = Callable[..., HttpResponse]


def can_read(request: HttpRequest) -> bool:
    # StatusReadable reads only request.user and the setting, both on a Django request.
    return StatusReadable().has_permission(request, None)  # type: ignore[arg-type]


def can_act(user: Any) -> bool:
    return bool(user.is_active and user.is_staff)


def readable(view: View) -> View:
    """Anonymous readers of a private dashboard go to the admin's login page (htmx
    fragments ask the browser to go there); logged-in non-staff users get a 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if can_read(request):
            return view(request, *args, **kwargs)
        if request.user.is_authenticated:
            raise PermissionDenied("the dashboard is readable by staff only here")
        if request.htmx:  # type: ignore[attr-defined]
            page = request.htmx.current_url_abs_path or "/"  # type: ignore[attr-defined]
            login = redirect_to_login(page, reverse("admin:login"))
            return HttpResponseClientRedirect(login["Location"])
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))

    return wrapped


def staff_only(view: View) -> View:
    """Actions: anyone else gets a 403, whatever the page showed them."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_act(request.user):
            raise PermissionDenied("only staff users may sync, redeploy or roll back")
        return view(request, *args, **kwargs)

    return wrapped
