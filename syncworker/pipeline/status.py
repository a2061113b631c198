"""A service's current health and sync status: written here only.

The health wait after an apply and the drift check both record through
``record_service_status``, so the two never disagree on how the fields are written.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from syncworker.models import Service


def record_service_status(
    service_id: int,
    *,
    health: str | None = None,
    message: str | None = None,
    sync_status: str | None = None,
) -> bool:
    """Set what is given (``None`` leaves a field as it is); answers whether a value
    changed, so a caller can notify once per change of state."""
    fields: dict[str, str] = {}
    if health is not None:
        fields["health"] = Service.Health(health).value
    if message is not None:
        fields["health_message"] = message[:10_000]
    if sync_status is not None:
        fields["sync_status"] = Service.SyncStatus(sync_status).value
    if not fields:
        return False
    current = Service.objects.filter(pk=service_id).values(*fields).first()
    if current is None:
        return False
    changed = any(current[k] != v for k, v in fields.items() if k != "health_message")
    if changed:
        fields["status_changed_at"] = timezone.now()  # type: ignore[assignment]
    Service.objects.filter(pk=service_id).update(**fields)
    return changed


def status_fields(
    *, health: str | None = None, message: str | None = None, sync_status: str | None = None
) -> dict[str, Any]:
    """The same change as ``record_service_status`` as keyword arguments of one
    ``Service.objects.filter(...).update()``, to join with other fields of the row:
    ``status_changed_at`` moves only when a state differs, decided by the UPDATE itself."""
    fields: dict[str, Any] = {}
    differs: list[Q] = []
    if health is not None:
        fields["health"] = Service.Health(health).value
        differs.append(~Q(health=fields["health"]))
    if message is not None:
        fields["health_message"] = message[:10_000]
    if sync_status is not None:
        fields["sync_status"] = Service.SyncStatus(sync_status).value
        differs.append(~Q(sync_status=fields["sync_status"]))
    if differs:
        fields["status_changed_at"] = Case(
            When(reduce(operator.or_, differs), then=Value(timezone.now())),
            default=F("status_changed_at"),
        )
    return fields
