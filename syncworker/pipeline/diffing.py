"""What a sync of a service would change: the one function behind the diff API, the
``diff_service`` command, the admin and the drift check.

A bundle (rendered at a commit, or the last successful deployment's) is compared with the
cluster by the applyer's server-side dry run (see :mod:`syncworker.applyers.kubediff`);
what the service's inventory holds and the bundle no longer does is ``pruned`` when the
service prunes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from syncworker.applyers.base import TransientApplyError
from syncworker.applyers.kubeapi import KubeConfigError
from syncworker.applyers.kubediff import PRUNED, UNCHANGED, DiffError, ObjectDiff
from syncworker.models import Cluster, Deployment, Service
from syncworker.pipeline import hooks, inventory
from syncworker.pipeline.deploying import InstallError, applyer_of
from syncworker.pipeline.fetching import render_at, render_message
from syncworker.render import RenderError
from syncworker.sources import source_for
from syncworker.sources.base import SourceError, UnsafePathError

BRANCH_HEAD, COMMIT, LAST_DEPLOYMENT = "branch head", "commit", "last successful deployment"


def is_commit_sha(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{7,64}", value) is not None


class DiffFailed(Exception):
    """No diff could be computed (the message says why). ``unreachable``: the cluster
    could not be asked, which says nothing about drift."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass
class ServiceDiff:
    service: str
    cluster: str
    #: What was compared: BRANCH_HEAD, COMMIT or LAST_DEPLOYMENT, at ``commit``.
    source: str
    commit: str
    #: Every object of the bundle and every object to prune, unchanged ones included.
    objects: list[ObjectDiff] = field(default_factory=list)
    #: The deployment whose bundle was compared (LAST_DEPLOYMENT only).
    deployment: Deployment | None = None

    @property
    def differences(self) -> list[ObjectDiff]:
        return [o for o in self.objects if o.action != UNCHANGED]

    @property
    def changed(self) -> bool:
        return bool(self.differences)

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "cluster": self.cluster,
            "compared": self.source,
            "commit": self.commit,
            "changed": self.changed,
            "unchanged": len(self.objects) - len(self.differences),
            "objects": [o.as_json() for o in self.differences],
        }

    def text(self) -> str:
        """What the command prints: one line per difference, then its unified diff."""
        head = f"{self.service} on {self.cluster}: {self.source} {self.commit[:12]}".rstrip()
        lines = [head]
        for o in self.differences:
            fields = f" ({', '.join(o.fields)})" if o.fields else ""
            lines.append(f"{o.action} {o.ref}{fields}")
            if o.diff:
                lines.append(o.diff.rstrip("\n"))
        if not self.changed:
            lines.append(f"no difference ({len(self.objects)} objects unchanged)")
        return "\n".join(lines) + "\n"


def diff_service(service: Service, commit: str | None = None) -> ServiceDiff:
    """What syncing ``service`` at ``commit`` (default: its branch head) would change."""
    cluster = _cluster(service)
    source = COMMIT if commit else BRANCH_HEAD
    try:
        if not commit:
            repo = service.repository
            commit = source_for(repo, workspace=settings.GITOPS["WORKSPACE"]).head().commit
        bundle = render_at(service, commit)
    except (RenderError, UnsafePathError) as exc:
        raise DiffFailed(
            f"{service.name} at {commit or 'its branch head'}: {render_message(exc)}"
        ) from exc
    except SourceError as exc:
        raise DiffFailed(
            f"{service.name}: cannot read {commit or 'the branch head'}: {exc}"
        ) from exc
    result = ServiceDiff(service.name, cluster.name, source, commit)
    result.objects = diff_bundle(service, cluster, bundle.yaml)
    return result


def diff_last_deployment(service: Service) -> ServiceDiff:
    """The live objects against the bundle the service last deployed successfully: its
    drift. DiffFailed when it never deployed."""
    cluster = _cluster(service)
    last = last_success(service, cluster)
    if last is None:
        raise DiffFailed(f"{service.name} has no successful deployment on {cluster.name}")
    result = ServiceDiff(
        service.name, cluster.name, LAST_DEPLOYMENT, last.commit_sha, deployment=last
    )
    result.objects = diff_bundle(service, cluster, last.bundle, prune=False)
    return result


def diff_deployment(deployment: Deployment) -> ServiceDiff:
    """What re-applying ``deployment``'s bundle (a rollback) would change now."""
    service = deployment.service
    cluster = deployment.cluster or _cluster(service)
    result = ServiceDiff(
        service.name, cluster.name, f"deployment {deployment.pk}", deployment.commit_sha
    )
    result.objects = diff_bundle(service, cluster, deployment.bundle)
    return result


def last_success(service: Service, cluster: Cluster) -> Deployment | None:
    return (
        Deployment.objects.filter(
            service=service, cluster=cluster, status=Deployment.Status.SUCCEEDED
        )
        .exclude(bundle_digest="")
        .order_by("-finished_at", "-pk")
        .first()
    )


def diff_bundle(
    service: Service, cluster: Cluster, bundle_yaml: str, *, prune: bool = True
) -> list[ObjectDiff]:
    """The bundle's objects against the cluster, then (``prune`` and the service prunes)
    what the inventory holds that the bundle does not."""
    try:
        applyer = applyer_of(cluster)
        # Hooks are created anew by each sync: nothing to compare them with.
        objects = applyer.diff(hooks.plan_of(bundle_yaml).yaml)
    except (TransientApplyError, KubeConfigError, InstallError) as exc:
        raise DiffFailed(f"cluster {cluster.name}: {exc}", unreachable=True) from exc
    except NotImplementedError as exc:
        raise DiffFailed(f"cluster {cluster.name}: {exc}") from exc
    except DiffError as exc:
        raise DiffFailed(f"cluster {cluster.name} refuses the bundle:\n{exc}") from exc
    if prune and service.prune:
        stale = inventory.stale(service, cluster, [o.ref for o in objects])
        objects += [ObjectDiff(ref, PRUNED) for ref in stale]
    return objects


def cluster_of(service: Service) -> Cluster | None:
    """The cluster a sync of the service goes to: its own, else the default."""
    return service.cluster or Cluster.objects.filter(is_default=True).first()


def _cluster(service: Service) -> Cluster:
    cluster = cluster_of(service)
    if cluster is None:
        raise DiffFailed(f"{service.name} has no cluster and there is no default cluster")
    return cluster
