"""The one writer of a service's current ``health`` and ``sync_status``.

Drift checks, deployments and health assessment all record through here, so the
notification and metrics that follow a change of state have one place to hook into.
"""

from __future__ import annotations

from syncworker.models import Service


def record_service_status(
    service_id: int, *, health: str | None = None, sync_status: str | None = None
) -> bool:
    """Store what is given (None leaves a field as it is); True when anything changed."""
    values: dict[str, str] = {}
    if health is not None:
        values["health"] = Service.Health(health).value
    if sync_status is not None:
        values["sync_status"] = Service.SyncStatus(sync_status).value
    if not values:
        return False
    unchanged = Service.objects.filter(pk=service_id, **values).exists()
    Service.objects.filter(pk=service_id).update(**values)
    return not unchanged
