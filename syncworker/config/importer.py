"""Write a validated ``GitopsConfig`` into the database, idempotently.

The import is planned first (compare every row with what the file wants, in memory) and
then written, so that ``dry_run`` touches nothing, not even through signals, and a rerun
with the same file saves no row at all. Rows the file no longer names are disabled, never
deleted: their deployment history stays. Only rows marked ``managed_by_config`` are
disabled that way; rows made in the admin are left alone unless the file names them, in
which case the file takes them over.
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
        if changed is None:
            action = CREATED
        elif changed == ["enabled"] and getattr(obj, "enabled", True) is False:
            action = DISABLED
        else:
            action = UPDATED if changed else UNCHANGED
        self.report.changes.append(Change(kind, name, action, tuple(changed or ())))
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
        if cluster.is_default and cluster is not target:
            plan.record("cluster", cluster.name, cluster, _assign(cluster, {"is_default": False}))
    desired = {
        "applyer": Cluster.Applyer(spec.kind).value,
        "settings": cluster_settings,
        "is_default": True,
        "managed_by_config": True,
    }
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
        "enabled": True,
        "managed_by_config": True,
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
        desired = _repository_fields(spec)
        repo = existing.get(spec.key)
        if repo is None:
            repo = Repository(key=spec.key, **desired)
            plan.record("repository", spec.key, repo, None)
        else:
            plan.record("repository", spec.key, repo, _assign(repo, desired))
        wanted[spec.key] = repo
    for key, repo in existing.items():
        if key not in wanted and repo.managed_by_config and repo.enabled:
            plan.record("repository", key, repo, _assign(repo, {"enabled": False}))
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
            "enabled": True,
            "managed_by_config": True,
        }
        service = existing.get(spec.name)
        if service is None:
            plan.record(
                "service", spec.name, Service(name=spec.name, cluster=None, **desired), None
            )
        else:
            plan.record("service", spec.name, service, _assign(service, desired))
        wanted.add(spec.name)
    for name, service in existing.items():
        if name not in wanted and service.managed_by_config and service.enabled:
            plan.record("service", name, service, _assign(service, {"enabled": False}))


def _plan_notifications(plan: _Plan, webhook_url: str | None, lock: bool) -> None:
    found = False
    for target in _rows(NotificationTarget, lock):
        name = host_only(target.url)
        if webhook_url is not None and target.url == webhook_url:
            found = True
            desired = {"enabled": True, "managed_by_config": True}
            plan.record("notification", name, target, _assign(target, desired))
        elif target.managed_by_config and target.enabled:
            plan.record("notification", name, target, _assign(target, {"enabled": False}))
    if webhook_url is not None and not found:
        target = NotificationTarget(url=webhook_url, enabled=True, managed_by_config=True)
        plan.record("notification", host_only(webhook_url), target, None)
