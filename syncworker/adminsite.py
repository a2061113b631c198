"""The admin site, guarded: every model admin registered on it (ours, Django's auth,
DRF's tokens, django-celery-beat's schedules) refuses a bad query string or selection
with a message instead of a server error. Django lets a non-numeric selected id or an
out-of-range date hierarchy value through to the database."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect


class _FilterGuard(ChangeList):
    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            # ?queued_at__year=99999 (or 9999, whose next year does not exist) becomes a
            # date outside Python's range.
            raise IncorrectLookupParameters(exc) from exc

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters)
        try:
            # Compiled now, not while the template renders: ?date_joined__year=99999999999
            # on a field without a date hierarchy only fails when the SQL is built.
            queryset.query.sql_with_params()
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        return queryset


_guarded_changelists: dict[type[ChangeList], type[ChangeList]] = {}


class GuardedAdminMixin:
    """Mixed in front of a ModelAdmin by ``GuardedSite.register``."""

    model: Any

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        base = super().get_changelist(request, **kwargs)  # type: ignore[misc]
        guarded = _guarded_changelists.get(base)
        if guarded is None:
            guarded = type(f"Guarded{base.__name__}", (_FilterGuard, base), {})
            _guarded_changelists[base] = guarded
        return guarded

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        try:
            return super().get_changelist_instance(request)  # type: ignore[misc]
        except IncorrectLookupParameters as exc:
            # Django answers with a redirect to the unfiltered list; say why.
            names = ", ".join(sorted(request.GET))[:200]
            messages.error(request, f"filters not applied ({names}): {str(exc)[:200]}")
            raise

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        pk = self.model._meta.pk
        for value in request.POST.getlist(ACTION_CHECKBOX_NAME):
            try:
                pk.to_python(value)
            except ValidationError:
                name = self.model._meta.verbose_name
                messages.error(
                    request,
                    f"{ACTION_CHECKBOX_NAME}: {value[:50]!r} is not a {name} id; nothing done",
                )
                return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)  # type: ignore[misc]


class GuardedSite(admin.AdminSite):
    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, GuardedAdminMixin):
            admin_class = type(
                admin_class.__name__,
                (GuardedAdminMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        super().register(model_or_iterable, admin_class, **options)


class GuardedAdminConfig(AdminConfig):
    default_site = "syncworker.adminsite.GuardedSite"
