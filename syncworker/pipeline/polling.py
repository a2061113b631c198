"""Poll one repository: has the branch moved, and which services changed?

A no-change poll costs one request to the Git host whatever the number of services.
When the head moved (or a service was never deployed, or its settings changed), one more
call gives the object id of every path the services' last builds read (their
directories, the kustomize bases and components they use); only services whose key over
those paths, or whose settings digest, differs from the one they were last deployed from
get a new Deployment (``changes``), so a monorepo commit touching one service does not
redeploy the others, one changing a shared base redeploys every service built from it,
and a service whose namespace or render options changed deploys again at the same commit.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from syncworker import rules
from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import changes, lifecycle, metrics
from syncworker.sources import source_for
from syncworker.sources.base import Head, Source, SourceError

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    repository_id: int
    skipped: str = ""
    commit: str = ""
    changed: bool = False
    deployments: list[int] = field(default_factory=list)  # queued, for the fetch stage
    failed: list[int] = field(default_factory=list)  # failed at once (directory missing)
    error: str = ""
    transient: bool = False
    retry_after: float | None = None


# A deployment that failed for one of these reasons did not really try its tree: the
# service keeps retrying it, with backoff, until it succeeds or a newer commit comes.
RETRYABLE = (Deployment.Reason.RETRIES,)
MAX_RETRY_DELAY = timedelta(hours=1)


# The annotations ``services_with_last_tree`` sets, and the deployment field of each: from
# the newest deployment that counts as tried, and from the newest from Git.
_LAST_TRIED = {
    "last_tree": "tree_sha",
    "last_paths": "paths_read",
    "last_settings": "settings_digest",
}
_NEWEST = {
    "newest_reason": "reason",
    "newest_status": "status",
    "newest_tree": "tree_sha",
    "newest_paths": "paths_read",
    "newest_finished": "finished_at",
}


def services_with_last_tree(
    repository: Repository, service_ids: list[int] | None = None
) -> list[Service]:
    """Enabled services of the repository, each annotated with ``last_tree``,
    ``last_paths`` and ``last_settings``: the key, the paths read and the settings digest
    of its newest deployment that came from
    Git (rollbacks and self-heals re-apply an old bundle and do not count, so the next
    Git change still deploys; transient failures do not count either), and
    ``retry_tree``/``retry_at``/``retry_paths`` when its newest deployment failed transiently."""
    from_git = Deployment.objects.filter(service=OuterRef("pk")).exclude(
        trigger__in=(Deployment.Trigger.ROLLBACK, Deployment.Trigger.SELF_HEAL)
    )
    tried = from_git.exclude(status=Deployment.Status.FAILED, reason__in=RETRYABLE)
    services = repository.services.filter(enabled=True)
    if service_ids is not None:
        services = services.filter(pk__in=service_ids)
    # Two id lookups per service (index scans), then one read of those rows: nine
    # correlated subqueries, one per field, cost 1.5 s of PostgreSQL per poll at 10,000.
    rows: list[Service] = list(
        services.annotate(
            last_tried_id=Subquery(tried.order_by("-id").values("pk")[:1]),
            newest_id=Subquery(from_git.order_by("-id").values("pk")[:1]),
        ).order_by("pk")
    )
    # Django runs no query for an empty ``pk__in``.
    wanted = {s.last_tried_id for s in rows} | {s.newest_id for s in rows}  # type: ignore[attr-defined]
    fields = {*_LAST_TRIED.values(), *_NEWEST.values()}
    found = {d.pk: d for d in Deployment.objects.filter(pk__in=wanted - {None}).only(*fields)}
    for service in rows:
        for names, row in (
            (_LAST_TRIED, found.get(service.last_tried_id)),  # type: ignore[attr-defined]
            (_NEWEST, found.get(service.newest_id)),  # type: ignore[attr-defined]
        ):
            for attribute, name in names.items():
                setattr(service, attribute, getattr(row, name) if row else None)
    _plan_retries(repository, rows)
    return rows


def _plan_retries(repository: Repository, services: list[Service]) -> None:
    """``retry_tree`` and ``retry_at`` on services whose newest deployment failed for a
    transient reason: the delay doubles with each such failure in a row, from the poll
    interval up to an hour."""
    waiting = [
        s
        for s in services
        if s.newest_status == Deployment.Status.FAILED  # type: ignore[attr-defined]
        and s.newest_reason in RETRYABLE  # type: ignore[attr-defined]
    ]
    for service in services:
        service.retry_tree = service.retry_at = None  # type: ignore[attr-defined]
        service.retry_paths = []  # type: ignore[attr-defined]
    if not waiting:
        return
    # One query for all of them (not one per service): their transient failures since
    # each one's last real try, counted here.
    floor = min(s.last_tried_id or 0 for s in waiting)  # type: ignore[attr-defined]
    rows = Deployment.objects.filter(
        service_id__in=[s.pk for s in waiting],
        status=Deployment.Status.FAILED,
        reason__in=RETRYABLE,
        pk__gt=floor,
    ).values_list("service_id", "pk")
    since: dict[int, list[int]] = {}
    for service_id, pk in rows:
        since.setdefault(service_id, []).append(pk)
    for service in waiting:
        last_tried = service.last_tried_id or 0  # type: ignore[attr-defined]
        failures = sum(1 for pk in since.get(service.pk, []) if pk > last_tried)
        delay = min(
            timedelta(seconds=repository.poll_interval * 2 ** (failures - 1)), MAX_RETRY_DELAY
        )
        service.retry_tree = service.newest_tree  # type: ignore[attr-defined]
        service.retry_paths = service.newest_paths or []  # type: ignore[attr-defined]
        service.retry_at = (service.newest_finished or timezone.now()) + delay  # type: ignore[attr-defined]


def poll_repository(
    repository_id: int,
    *,
    trigger: str = Deployment.Trigger.POLL,
    force: bool = False,
    service_ids: list[int] | None = None,
) -> PollResult:
    """Poll and queue deployments. ``force`` redeploys the services (all of the
    repository's, or those of ``service_ids``) at the head even when unchanged."""
    result = PollResult(repository_id)
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None:
        result.skipped = "repository no longer exists"
        return result
    if not repo.enabled:
        result.skipped = "repository disabled"
        return result
    now = timezone.now()
    if trigger == Deployment.Trigger.POLL and repo.next_poll_after and repo.next_poll_after > now:
        result.skipped = "backing off after failures"
        return result

    services = services_with_last_tree(repo, service_ids)
    # A service whose directory breaks the path rules fails on its own; its siblings
    # deploy as usual.
    directories, refused = _directories(services)
    never_deployed = any(s.last_tree is None for s in services)  # type: ignore[attr-defined]
    retry_due = any(s.retry_at and s.retry_at <= now for s in services)  # type: ignore[attr-defined]
    settings_changed = any(_settings_changed(s) for s in services)
    try:
        source = source_for(repo, workspace=settings.GITOPS["WORKSPACE"])
        head = source.head(etag=repo.etag, last_commit=repo.last_seen_commit)
        ids: dict[str, str | None] = {}
        if services and (
            head.changed
            or never_deployed
            or retry_due
            or settings_changed
            or force
            or not repo.last_seen_commit
        ):
            ids = source.tree_ids(head.commit, _paths_to_read(services, directories))
    except SourceError as exc:
        _record_failure(repo, str(exc), retry_after=exc.retry_after)
        result.error, result.transient = str(exc), exc.transient
        result.retry_after = exc.retry_after
        return result

    result.commit, result.changed = head.commit, head.changed
    queued: list[Deployment] = []
    with transaction.atomic():
        # Serialise with a concurrent poll of the same repository (beat and a webhook at
        # once), and re-read what was queued meanwhile, so a tree is queued only once.
        Repository.objects.select_for_update().filter(pk=repo.pk).first()
        _record_success(repo, head)
        current = services_with_last_tree(repo, service_ids) if ids or refused else []
        _read_missing_ids(source, head.commit, current, directories, ids)
        for service in current:
            last_tree = service.last_tree  # type: ignore[attr-defined]
            changed_settings = _settings_changed(service)
            directory = directories.get(service.pk)
            if directory is None:
                if service.pk in refused and (last_tree != "" or changed_settings):
                    problem = f"k8s_yaml_dir {refused[service.pk]}"
                    result.failed.append(
                        _fail_missing(service, commit=head.commit, trigger=trigger, error=problem)
                    )
                continue
            if directory not in ids:
                continue  # enabled after the ids were read: the next poll has it
            tree, paths = _key_over(directory, service.last_paths, ids)  # type: ignore[attr-defined]
            if tree is None:
                # Reported once per disappearance (or change of settings), not on every
                # poll; nothing is pruned.
                if last_tree != "" or changed_settings:
                    problem = f"{directory or '.'} does not exist at {head.commit[:12]}"
                    result.failed.append(
                        _fail_missing(service, commit=head.commit, trigger=trigger, error=problem)
                    )
                continue
            retry_tree = service.retry_tree  # type: ignore[attr-defined]
            if retry_tree and retry_tree == _key_over(directory, service.retry_paths, ids)[0]:  # type: ignore[attr-defined]
                if not force and not changed_settings and service.retry_at > now:  # type: ignore[attr-defined]
                    continue  # a transient failure of this very tree: wait for its backoff
            elif not force and tree == last_tree and not changed_settings:
                continue
            queued.append(
                new_deployment(service, commit=head.commit, tree=tree, trigger=trigger, paths=paths)
            )
        # One INSERT per 500 deployments rather than one per service (the ids come back).
        Deployment.objects.bulk_create(queued, batch_size=500)
        result.deployments.extend(d.pk for d in queued)
    metrics.record_poll(repo.key, ok=True)
    return result


def _read_missing_ids(
    source: Source,
    commit: str,
    services: list[Service],
    directories: dict[int, str],
    ids: dict[str, str | None],
) -> None:
    """Add to ``ids`` the paths of builds that finished after they were read (a concurrent
    poll's deployment rendered meanwhile, which read the root ``.gitopsignore``): without
    them its key would count as changed and the service deploy again at the same commit.
    Unread (the host failing now), such a path still counts as changed."""
    missing = set(_paths_to_read(services, directories)) - ids.keys()
    if missing:
        with contextlib.suppress(SourceError):
            ids.update(source.tree_ids(commit, sorted(missing)))


def _settings_changed(service: Service) -> bool:
    """Whether the service's settings differ from those of its last deployment from Git
    (one stored before digests were recorded counts as made with today's)."""
    last = service.last_settings  # type: ignore[attr-defined]
    return bool(last) and last != changes.settings_digest(service)


def _directories(services: list[Service]) -> tuple[dict[int, str], dict[int, str]]:
    """Each service's directory in canonical form, and the problem of those refused."""
    directories: dict[int, str] = {}
    refused: dict[int, str] = {}
    for service in services:
        try:
            directories[service.pk] = rules.repo_path(service.k8s_yaml_dir)
        except rules.RuleError as exc:
            refused[service.pk] = str(exc)
    return directories, refused


def _paths_to_read(services: list[Service], directories: dict[int, str]) -> list[str]:
    """Every path whose id the poll compares: each service's directory and what its last
    build (and its transiently failed newest one) read."""
    paths: set[str] = set()
    for service in services:
        if service.pk in directories:
            paths.add(directories[service.pk])
            paths.update(service.last_paths or [])  # type: ignore[attr-defined]
            paths.update(service.retry_paths)  # type: ignore[attr-defined]
    return sorted(paths)


def _key_over(
    directory: str, paths_read: list[str] | None, ids: dict[str, str | None]
) -> tuple[str | None, list[str]]:
    """The key of a service over the paths a build of it read, and those paths. A path
    the ids do not cover (``_read_missing_ids`` could not read it) counts as changed: a
    needless redeploy rather than a missed one, whose fetch then computes its key afresh
    (no paths given)."""
    paths = changes.compared_paths(directory, paths_read or [])
    key = changes.tree_key(directory, {path: ids.get(path, "?") for path in paths})
    return key, paths if all(path in ids for path in paths) else []


def new_deployment(
    service: Service, *, commit: str, tree: str, trigger: str, paths: list[str] | None = None
) -> Deployment:
    """A queued deployment, not yet saved (the chain hands it to a fetch worker). ``paths``
    are those ``tree`` was computed over; the fetch replaces them with what its build read."""
    return Deployment(
        service=service,
        cluster_id=service.cluster_id,  # the id: no read of the cluster per service
        commit_sha=commit,
        tree_sha=tree,
        paths_read=paths or [],
        settings_digest=changes.settings_digest(service),
        trigger=trigger,
    )


def _fail_missing(service: Service, *, commit: str, trigger: str, error: str) -> int:
    deployment = new_deployment(service, commit=commit, tree="", trigger=trigger)
    deployment.save()
    lifecycle.fail(deployment.pk, Deployment.Reason.SOURCE, error)
    return deployment.pk


def _record_success(repo: Repository, head: Head) -> None:
    # .update() rather than save(): a poll must not race an admin edit of other fields.
    Repository.objects.filter(pk=repo.pk).update(
        last_polled_at=timezone.now(),
        last_seen_commit=head.commit,
        etag=head.etag,
        last_error="",
        consecutive_failures=0,
        next_poll_after=None,
    )


def _record_failure(repo: Repository, message: str, *, retry_after: float | None) -> None:
    Repository.objects.filter(pk=repo.pk).update(
        last_polled_at=timezone.now(),
        last_error=message[:2000],
        consecutive_failures=F("consecutive_failures") + 1,
    )
    repo.refresh_from_db(fields=["consecutive_failures"])
    # The host's own hint (rate-limit reset, Retry-After) wins when it asks for longer.
    delay = max(repo.backoff(), timedelta(seconds=retry_after or 0))
    Repository.objects.filter(pk=repo.pk).update(next_poll_after=timezone.now() + delay)
    metrics.record_poll(repo.key, ok=False)
    log.warning("poll %s failed (%d in a row): %s", repo.key, repo.consecutive_failures, message)
