"""What the REST API and the admin may not change or delete, and why: one place for both
doors, so that they refuse the same things with the same message.

- A row the config file names is the file's: changing a field the file sets would be
  undone by the next ``load_gitops_config``, deleting the row would be undone by it too
  (with the history gone), so both are refused, naming the file.
- A cluster or repository that is in use keeps its row: deleting it would delete the
  deployment history and the inventory of its services (what prune and the ownership
  check rest on), or strand deployments in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from syncworker.models import (
    AppliedObject,
    Cluster,
    Deployment,
    NotificationTarget,
    Repository,
    Service,
)

IN_FLIGHT = (Deployment.Status.QUEUED, Deployment.Status.APPLYING)
# The import's bookkeeping of a row that left the file: it only keeps the row disabled.
LEFT_THE_FILE = frozenset({"enabled"})

Guarded = Cluster | Repository | Service | NotificationTarget


class Refused(Exception):
    """The change or delete would lose what the message names; nothing was done."""


def describe(obj: Guarded) -> str:
    """``service 'web'``: how messages name a row."""
    if isinstance(obj, Repository):
        return f"repository {obj.key!r}"
    if isinstance(obj, NotificationTarget):
        return f"notification target {str(obj)!r}"
    return f"{obj._meta.verbose_name} {obj.name!r}"


def config_source() -> str:
    configured = settings.GITOPS.get("CONFIG_FILE")
    return f"the config file {str(configured)!r}" if configured else "the gitops config file"


def config_owned(obj: Guarded, fields: Iterable[str] | None = None) -> list[str]:
    """The fields of ``obj`` (of ``fields``, when given) that the config file sets."""
    if not obj.managed_by_config:
        return []
    owned = set(obj.config_fields)
    return sorted(owned if fields is None else owned.intersection(fields))


def named_by_config(obj: Guarded) -> bool:
    """Whether the file names the row (rather than keeping one that left it disabled)."""
    return bool(set(config_owned(obj)) - LEFT_THE_FILE)


def config_owned_message(obj: Guarded, fields: list[str]) -> str:
    if not named_by_config(obj):
        return (
            f"{describe(obj)} was removed from {config_source()}, which keeps it disabled "
            "(its history stays); add it to the file again to enable it"
        )
    one = len(fields) == 1
    return (
        f"{describe(obj)} comes from {config_source()}, which sets {', '.join(fields)}: "
        f"change {'it' if one else 'them'} in the file, since the next load_gitops_config "
        f"would put the file's {'value' if one else 'values'} back"
    )


def refuse_config_edit(obj: Guarded, changes: dict[str, Any]) -> None:
    """Raise ``Refused`` when ``changes`` (field: new value) alter a field the config
    file sets; resending the stored value is no change."""
    changed = [name for name, value in changes.items() if getattr(obj, name) != value]
    owned = config_owned(obj, changed)
    if owned:
        raise Refused(config_owned_message(obj, owned))


def why_not_deletable(obj: Guarded) -> str:
    """Why the row must stay (empty when it may go)."""
    if named_by_config(obj):
        return (
            f"{describe(obj)} comes from {config_source()}: the next load_gitops_config "
            "would create it again, without its history; remove it from the file (which "
            "disables it) before deleting it"
        )
    if isinstance(obj, Cluster):
        return cluster_in_use(obj)
    if isinstance(obj, Repository):
        return repository_in_use(obj)
    return ""


@transaction.atomic
def delete(obj: Guarded) -> None:
    """Delete the row unless ``why_not_deletable``; the row is locked meanwhile, so a
    concurrent edit cannot slip in between the check and the delete."""
    locked = type(obj)._default_manager.select_for_update().filter(pk=obj.pk).first()
    if locked is None:
        return
    reason = why_not_deletable(locked)
    if reason:
        raise Refused(reason)
    locked.delete()


def cluster_in_use(cluster: Cluster) -> str:
    """Why the cluster's row must stay: the services that deploy to it, as their own
    cluster or as the default, deployments still to apply to it, and the objects
    recorded on it, which a delete would forget, so they would never be pruned."""
    users = Service.objects.filter(Q(cluster=cluster) | Q(cluster__isnull=True))
    if not cluster.is_default:
        users = users.filter(cluster=cluster)
    reasons = []
    names = _names(users)
    if names:
        reasons.append(f"services deploy to it ({names})")
    reasons += _history(
        Deployment.objects.filter(cluster=cluster),
        AppliedObject.objects.filter(cluster=cluster),
        holder="it holds",
    )
    if not reasons:
        return ""
    return f"{describe(cluster)} is in use: {_join(reasons)}; move or remove its services first"


def repository_in_use(repository: Repository) -> str:
    """Why the repository's row must stay: its services, whose deployment history and
    inventory would go with it (disabling the repository keeps them)."""
    services = Service.objects.filter(repository=repository)
    names = _names(services)
    if not names:
        return ""
    reasons = [f"services are read from it ({names})"]
    reasons += _history(
        Deployment.objects.filter(service__repository=repository),
        AppliedObject.objects.filter(service__repository=repository),
        holder="they hold",
    )
    return (
        f"{describe(repository)} is in use: {_join(reasons)}; disable it to stop polling "
        "(history kept), or remove its services first"
    )


def _names(services: models.QuerySet[Service]) -> str:
    names = list(services.order_by("name").values_list("name", flat=True)[:6])
    return ", ".join(names[:5]) + (", …" if len(names) > 5 else "")


def _history(
    deployments: models.QuerySet[Deployment],
    inventory: models.QuerySet[AppliedObject],
    *,
    holder: str,
) -> list[str]:
    reasons = []
    in_flight = deployments.filter(status__in=IN_FLIGHT).count()
    if in_flight:
        reasons.append(f"{_plural(in_flight, 'deployment')} in flight")
    objects = inventory.count()
    if objects:
        reasons.append(f"{holder} {_plural(objects, 'applied object')}")
    return reasons


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _join(reasons: list[str]) -> str:
    return reasons[0] if len(reasons) == 1 else f"{', '.join(reasons[:-1])} and {reasons[-1]}"
