"""The admin's side of ``syncworker.guards``: what the REST API answers with a 409, the
admin shows as read-only fields and as Django's own "cannot delete" page."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from syncworker import guards


class GuardedAdmin(admin.ModelAdmin):
    """The fields the config file sets are read-only, and the change page says where
    they come from; a row in use or named by the file is not deleted, alone or with the
    "delete selected" action, and the page says why."""

    #: Write-only fields: hidden, not shown read-only, when the file sets them.
    secret_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        base = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return base
        owned = guards.config_owned(obj)
        return (*base, *(f for f in owned if f not in base and f not in self.secret_fields))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        if obj is None:
            return fields
        hidden = {
            name
            for secret in guards.config_owned(obj, self.secret_fields)
            for name in (secret, f"clear_{secret}")
        }
        return [f for f in fields if f not in hidden]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        owned = guards.config_owned(obj) if obj is not None else []
        if owned:
            message = guards.config_owned_message(obj, owned)
            self.message_user(request, f"{message} (read-only here)", level=messages.WARNING)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        reasons = [reason for reason in map(guards.why_not_deletable, objs) if reason]
        return deleted, counts, perms_needed, [*reasons, *protected]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._delete(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        self._delete(request, queryset)

    def _delete(self, request: HttpRequest, objs: Iterable[Any]) -> None:
        # The pages checked already; this catches a row that came into use since.
        for obj in objs:
            try:
                guards.delete(obj)
            except guards.Refused as exc:
                self.message_user(request, f"not deleted: {exc}", level=messages.ERROR)
