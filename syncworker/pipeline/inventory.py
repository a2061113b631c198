"""The inventory of what each service put on each cluster: what prune compares against.

A successful deployment makes it exactly what the service now has there (``replace``); a
failed one adds whatever did reach the cluster (``add``), so that an object applied by a
deployment that failed later is still pruned once it leaves Git.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from syncworker.kube.refs import ObjectRef
from syncworker.models import AppliedObject, Cluster, Deployment, Service


def refs_from_json(items: Iterable[dict[str, str]]) -> list[ObjectRef]:
    return [ObjectRef(i["api_version"], i["kind"], i["namespace"], i["name"]) for i in items]


def refs_to_json(refs: Iterable[ObjectRef]) -> list[dict[str, str]]:
    return [
        {"api_version": r.api_version, "kind": r.kind, "namespace": r.namespace, "name": r.name}
        for r in refs
    ]


def current(service: Service, cluster: Cluster) -> set[ObjectRef]:
    rows = AppliedObject.objects.filter(service=service, cluster=cluster).values_list(
        "api_version", "kind", "namespace", "name"
    )
    return {ObjectRef(*row) for row in rows}


def stale(service: Service, cluster: Cluster, desired: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Objects recorded for the service that the new bundle no longer contains. Compared
    by group, kind, namespace and name, so an apiVersion bump is not a deletion."""
    wanted = {r.identity for r in desired}
    return sorted(r for r in current(service, cluster) if r.identity not in wanted)


def owners(
    service: Service, cluster: Cluster, desired: Iterable[ObjectRef]
) -> dict[ObjectRef, str]:
    """The objects of ``desired`` that another service's inventory holds on ``cluster``,
    with that service's name. Compared by group, kind, namespace and name."""
    wanted = {r.identity: r for r in desired}
    rows = (
        AppliedObject.objects.filter(_any_of(cluster, wanted.values()))
        .exclude(service=service)
        .order_by()
        .values_list("api_version", "kind", "namespace", "name", _owner_name())
    )
    found: dict[ObjectRef, str] = {}
    for *ref, owner in rows:
        mine = wanted.get(ObjectRef(*ref).identity)
        if mine is not None:
            found[mine] = owner
    return found


@dataclass
class Held:
    """One read of the inventory for an apply: the service's own rows on the cluster
    (by ref, with their ids) and the desired objects another service holds there."""

    mine: dict[ObjectRef, int] = field(default_factory=dict)
    taken: dict[ObjectRef, str] = field(default_factory=dict)

    def stale(self, desired: Iterable[ObjectRef]) -> list[ObjectRef]:
        """As ``stale()``, from this read."""
        wanted = {r.identity for r in desired}
        return sorted(r for r in self.mine if r.identity not in wanted)


def held(service: Service, cluster: Cluster, desired: Iterable[ObjectRef]) -> Held:
    """``current()`` and ``owners()`` in one query (both run inside the cluster's lease,
    where nothing else writes this service's rows on the cluster)."""
    wanted = {r.identity: r for r in desired}
    rows = (
        AppliedObject.objects.filter(
            Q(cluster=cluster, service=service) | _any_of(cluster, wanted.values())
        )
        .order_by()
        .values_list("pk", "api_version", "kind", "namespace", "name", "service_id", _owner_name())
    )
    found = Held()
    for pk, api_version, kind, namespace, name, service_id, owner in rows:
        ref = ObjectRef(api_version, kind, namespace, name)
        if service_id == service.pk:
            found.mine[ref] = pk
        elif (mine := wanted.get(ref.identity)) is not None:
            found.taken[mine] = owner
    return found


def replace(
    service: Service,
    cluster: Cluster,
    refs: Iterable[ObjectRef],
    deployment: Deployment,
    *,
    before: Held | None = None,
) -> None:
    """Make the inventory exactly ``refs`` (call inside the deployment's transaction).
    With ``before`` (what ``held()`` read under the same lease) only the difference is
    written: rows that left are deleted, new ones inserted, the rest marked as this
    deployment's, at most three statements and one when nothing changed."""
    if before is None:
        AppliedObject.objects.filter(service=service, cluster=cluster).delete()
        AppliedObject.objects.bulk_create(_rows(service, cluster, refs, deployment), batch_size=500)
        return
    wanted = set(refs)
    gone = [pk for ref, pk in before.mine.items() if ref not in wanted]
    if gone:
        AppliedObject.objects.filter(pk__in=gone).delete()
    if len(gone) < len(before.mine):
        AppliedObject.objects.filter(service=service, cluster=cluster).update(
            deployment=deployment, updated_at=timezone.now()
        )
    new = wanted - set(before.mine)
    AppliedObject.objects.bulk_create(_rows(service, cluster, new, deployment), batch_size=500)


def add(
    service: Service,
    cluster: Cluster,
    refs: Iterable[ObjectRef],
    deployment: Deployment,
    *,
    removed: Iterable[ObjectRef] = (),
) -> None:
    """Add ``refs`` to the inventory and drop ``removed`` (pruned) from it. Rows already
    there stay as they are, the service's own and another service's alike: taking an
    object from its owner is not decided here."""
    removed = set(removed)
    for ref in removed:
        AppliedObject.objects.filter(
            service=service,
            cluster=cluster,
            api_version=ref.api_version,
            kind=ref.kind,
            namespace=ref.namespace,
            name=ref.name,
        ).delete()
    rows = _rows(service, cluster, set(refs) - removed, deployment)
    AppliedObject.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)


def _any_of(cluster: Cluster, refs: Iterable[ObjectRef]) -> Q:
    """Rows on ``cluster`` that may be one of ``refs``: looked up by namespace and name
    through the index of ``one_owner_per_object``, so the check reads about as many rows
    as the bundle has objects, however many the cluster holds (kind and group are
    compared by the caller)."""
    refs = list(refs)
    return Q(
        cluster=cluster,
        namespace__in={r.namespace for r in refs},
        name__in={r.name for r in refs},
    )


def _owner_name() -> Subquery:
    # A lookup per row found (a few), not a join the planner may answer by reading
    # every service.
    return Subquery(Service.objects.filter(pk=OuterRef("service_id")).values("name")[:1])


def _rows(
    service: Service, cluster: Cluster, refs: Iterable[ObjectRef], deployment: Deployment
) -> list[AppliedObject]:
    return [
        AppliedObject(
            service=service,
            cluster=cluster,
            api_version=r.api_version,
            kind=r.kind,
            namespace=r.namespace,
            name=r.name,
            deployment=deployment,
        )
        for r in sorted(set(refs))
    ]
