"""Write a validated ``GitopsConfig`` into the database, idempotently.

The import is planned first (compare every row with what the file wants, in memory) and
then written, so that ``dry_run`` touches nothing, not even through signals, and a rerun
with the same file saves no row at all. Rows the file no longer names are disabled, never
deleted: their deployment history stays. Only rows marked ``managed_by_config`` are
disabled that way; rows made in the admin are left alone unless the file names them, in
which case the file takes them over.

Each row the file names records the fields the file set (``config_fields``): the API and
the admin refuse to change those (``syncworker.guards``), since the next load would put
the file's values back. ``enabled`` is not among them: it is the operator's pause switch,
which a load leaves alone, except that a row leaving the file is disabled and a row
coming back is enabled again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import models, transaction

from syncworker.config.schema import GitopsConfig, RepoSpec, ServiceSpec
from syncworker.models import Cluster, NotificationTarget, Repository, Service
from syncworker.rules import host_only

logger = logging.getLogger(__name__)

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
DISABLED = "disabled"

# The ``config_fields`` of a row that left the file: the file owns only its switch, which
# it keeps off until the row comes back.
LEFT_THE_FILE = ["enabled"]


@dataclass(frozen=True)
class Change:
    """What the import did (or would do) to one row. ``fields`` holds field names only,
    never values: one of them may be a token."""

    kind: str
    name: str
    action: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.action == UPDATED and self.fields else ""
        return f"{self.kind} {self.name}: {self.action}{detail}"


@dataclass
class ImportReport:
    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(change.action != UNCHANGED for change in self.changes)

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)

    def summary(self) -> str:
        if not self.changed:
            return f"unchanged: all {len(self.changes)} objects already match the file"
        counts = Counter(change.action for change in self.changes)
        parts = ", ".join(
            f"{counts[action]} {action}"
            for action in (CREATED, UPDATED, DISABLED, UNCHANGED)
            if counts[action]
        )
        return f"would be: {parts} (nothing written)" if self.dry_run else parts


class _Plan:
    """The report plus the writes that realise it, in the order they must happen."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.writes: list[tuple[models.Model, list[str] | None]] = []

    def record(self, kind: str, name: str, obj: models.Model, changed: list[str] | None) -> None:
        """``changed`` is None for a new row, else the fields that differ."""
        # config_fields is the import's own bookkeeping: named only when nothing else changed.
        shown = [f for f in changed or () if f != "config_fields"] or changed or []
        if changed is None:
            action = CREATED
        elif shown == ["enabled"] and getattr(obj, "enabled", True) is False:
            action = DISABLED
        else:
            action = UPDATED if changed else UNCHANGED
        self.report.changes.append(Change(kind, name, action, tuple(shown)))
        if action != UNCHANGED:
            self.writes.append((obj, changed))

    def execute(self) -> None:
        for obj, changed in self.writes:
            if changed is None:
                obj.save(force_insert=True)
                continue
            names = [f.name for f in obj._meta.concrete_fields]
            # auto_now only reaches the database when named in update_fields.
            obj.save(update_fields=[*changed, *(["updated_at"] if "updated_at" in names else [])])


@transaction.atomic
def import_config(config: GitopsConfig, *, dry_run: bool = False) -> ImportReport:
    """Make the database match ``config``; with ``dry_run`` only report what would change."""
    plan = _Plan(ImportReport(dry_run=dry_run))
    # Lock the rows we read-modify-write, so two imports at once (command and admin,
    # say) serialise instead of interleaving; a dry run only reads.
    lock = not dry_run
    _plan_cluster(plan, config, lock)
    repositories = _plan_repositories(plan, config.repositories, lock)
    _plan_services(plan, config.services, repositories, lock)
    _plan_notifications(plan, config.webhook_url, lock)
    if not dry_run:
        plan.execute()
        logger.info("gitops config imported: %s", plan.report.summary())
    return plan.report


def _rows(model: type[models.Model], lock: bool) -> models.QuerySet[Any]:
    queryset = model._default_manager.order_by("pk")
    return queryset.select_for_update() if lock else queryset


def _assign(obj: models.Model, desired: dict[str, Any]) -> list[str]:
    """Set the fields of ``obj`` that differ from ``desired``; return their names."""
    changed = []
    for name, value in desired.items():
        if isinstance(value, models.Model):
            # Compare foreign keys by id; an unsaved target is always a change.
            differs = value.pk is None or getattr(obj, f"{name}_id") != value.pk
        else:
            differs = getattr(obj, name) != value
        if differs:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def _owned(desired: dict[str, Any], key: str) -> dict[str, Any]:
    """``desired`` plus the bookkeeping of a row the file names: the fields it sets, its
    ``key`` too (renamed, it would be a row the file no longer names)."""
    return {**desired, "config_fields": sorted({*desired, key}), "managed_by_config": True}


def _named(row: models.Model | None, desired: dict[str, Any], key: str) -> dict[str, Any]:
    """``_owned``, and ``enabled`` again for a new row or one that had left the file."""
    named = _owned(desired, key)
    if row is None or _left_the_file(row):
        named["enabled"] = True
    return named


def _left_the_file(row: Any) -> bool:
    return bool(row.managed_by_config and row.config_fields == LEFT_THE_FILE)


def _leave(plan: _Plan, kind: str, name: str, row: Any) -> None:
    """Disable a row of ours the file no longer names (never delete: its history stays)."""
    if row.managed_by_config and (row.enabled or not _left_the_file(row)):
        plan.record(
            kind, name, row, _assign(row, {"enabled": False, "config_fields": LEFT_THE_FILE})
        )


def _plan_cluster(plan: _Plan, config: GitopsConfig, lock: bool) -> None:
    """The configured applyer becomes the default cluster. The previous default loses the
    flag first: a partial unique constraint allows one default at a time."""
    spec = config.applyer
    cluster_settings = dict(spec.settings)
    if spec.kind == Cluster.Applyer.FILE and "directory" not in cluster_settings:
        cluster_settings["directory"] = str(settings.GITOPS["RENDER_DIR"])
    clusters = list(_rows(Cluster, lock))
    target = next((c for c in clusters if c.name == spec.cluster_name), None)
    for cluster in clusters:
        if cluster is target:
            continue
        # A former config cluster keeps its row (and history) but is the file's no more.
        dropped: dict[str, Any] = {"config_fields": []} if cluster.managed_by_config else {}
        if cluster.is_default or cluster.config_fields:
            released = _assign(cluster, {"is_default": False, **dropped})
            plan.record("cluster", cluster.name, cluster, released)
    desired = _owned(
        {
            "applyer": Cluster.Applyer(spec.kind).value,
            "settings": cluster_settings,
            "is_default": True,
        },
        "name",
    )
    if target is None:
        plan.record("cluster", spec.cluster_name, Cluster(name=spec.cluster_name, **desired), None)
    else:
        plan.record("cluster", target.name, target, _assign(target, desired))


def _repository_fields(spec: RepoSpec) -> dict[str, Any]:
    desired: dict[str, Any] = {
        "provider": Repository.Provider(spec.provider).value,
        "owner": spec.owner,
        "name": spec.name,
        "url": spec.url,
        "api_url": spec.api_url,
        "branch": spec.branch,
        "poll_interval": spec.poll_interval,
        "allowed_namespaces": list(spec.namespaces) if spec.namespaces is not None else None,
        "allowed_cluster_resources": (
            list(spec.cluster_resources) if spec.cluster_resources is not None else None
        ),
    }
    # A secret the file does not set keeps its stored value (it may come from the admin).
    if spec.token is not None:
        desired["token"] = spec.token
    if spec.webhook_secret is not None:
        desired["webhook_secret"] = spec.webhook_secret
    return desired


def _plan_repositories(
    plan: _Plan, specs: tuple[RepoSpec, ...], lock: bool
) -> dict[str, Repository]:
    existing = {repo.key: repo for repo in _rows(Repository, lock)}
    wanted: dict[str, Repository] = {}
    for spec in specs:
        repo = existing.get(spec.key)
        desired = _named(repo, _repository_fields(spec), "key")
        if repo is None:
            repo = Repository(key=spec.key, **desired)
            plan.record("repository", spec.key, repo, None)
        else:
            plan.record("repository", spec.key, repo, _assign(repo, desired))
        wanted[spec.key] = repo
    for key, repo in existing.items():
        if key not in wanted:
            _leave(plan, "repository", key, repo)
    return wanted


def _plan_services(
    plan: _Plan,
    specs: tuple[ServiceSpec, ...],
    repositories: dict[str, Repository],
    lock: bool,
) -> None:
    # Service.cluster is not managed here: the file has no per-service cluster, new
    # services get None (= the default cluster) and a cluster picked in the admin stays.
    existing = {service.name: service for service in _rows(Service, lock)}
    wanted: set[str] = set()
    for spec in specs:
        desired = {
            "repository": repositories[spec.repo_key],
            "k8s_yaml_dir": spec.k8s_yaml_dir,
            "namespace": spec.namespace,
            "prune": spec.prune,
            "stateless": spec.stateless,
            "recurse": spec.recurse,
            "include": list(spec.include),
            "exclude": list(spec.exclude),
            "create_namespace": spec.create_namespace,
            "wait": spec.wait,
            "health_timeout": spec.health_timeout,
            "drift_interval": spec.drift_interval,
            "self_heal": spec.self_heal,
        }
        service = existing.get(spec.name)
        desired = _named(service, desired, "name")
        if service is None:
            plan.record(
                "service", spec.name, Service(name=spec.name, cluster=None, **desired), None
            )
        else:
            plan.record("service", spec.name, service, _assign(service, desired))
        wanted.add(spec.name)
    for name, service in existing.items():
        if name not in wanted:
            _leave(plan, "service", name, service)


def _plan_notifications(plan: _Plan, webhook_url: str | None, lock: bool) -> None:
    found = False
    for target in _rows(NotificationTarget, lock):
        name = host_only(target.url)
        if webhook_url is not None and target.url == webhook_url:
            found = True
            plan.record(
                "notification",
                name,
                target,
                _assign(target, _named(target, {"url": webhook_url}, "url")),
            )
        else:
            _leave(plan, "notification", name, target)
    if webhook_url is not None and not found:
        target = NotificationTarget(**_named(None, {"url": webhook_url}, "url"))
        plan.record("notification", host_only(webhook_url), target, None)
