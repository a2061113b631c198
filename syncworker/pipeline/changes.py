"""What change detection compares for one service: a key over every repository path its
build read (its directory, kustomize bases and components, the root ``.gitopsignore``),
and a digest of the service's settings that shape what is applied.

A commit that changes none of those paths renders the same bundle, so the key stays the
same and the service is not redeployed; a commit that changes a base one of its overlays
uses changes the key. For a build that read its own directory alone the key is that
directory's Git tree id, as it always was, so rows stored before paths were recorded
compare equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncworker.models import Service

# The fields of a Service that change what a deployment applies or where: what the fetch
# renders from (name and namespace are stamped on objects, the rest choose and shape
# them), the cluster it goes to, and whether what left Git is pruned.
APPLIED_SETTINGS = (
    "name",
    "k8s_yaml_dir",
    "cluster",
    "namespace",
    "create_namespace",
    "stateless",
    "recurse",
    "include",
    "exclude",
    "prune",
)
# Settings that do not change what is applied: changing them deploys nothing. (Another
# repository is another tree, which its key compares; the repository's poll interval and
# the notification targets are not the service's.)
OTHER_SETTINGS = ("repository", "enabled", "wait", "health_timeout", "drift_interval", "self_heal")


def compared_paths(service_dir: str, paths_read: Iterable[str]) -> list[str]:
    """The paths to compare for a service: those its last build read (none recorded: its
    directory alone), always with the directory, whose absence means "missing"."""
    return sorted({service_dir, *paths_read})


def tree_key(service_dir: str, ids: Mapping[str, str | None]) -> str | None:
    """The key of ``ids`` (path -> Git object id at one commit, None where nothing is),
    or None when the service directory itself is missing. A path that is absent counts
    as such: when it appears (a ``.gitopsignore`` added) the key changes."""
    own = ids.get(service_dir)
    if own is None:
        return None
    present = sorted((path, oid) for path, oid in ids.items() if oid is not None)
    if present == [(service_dir, own)]:
        return own
    lines = "".join(f"{path or '.'} {oid}\n" for path, oid in present)
    return hashlib.sha256(lines.encode()).hexdigest()


def settings_digest(service: Service) -> str:
    """The digest of ``APPLIED_SETTINGS`` of ``service`` as they are now: the poll deploys
    a service again, at the same commit, when it differs from its last deployment's. A
    cluster left empty is compared as such: a new default cluster deploys nothing."""
    values = {
        name: getattr(service, "cluster_id" if name == "cluster" else name)
        for name in APPLIED_SETTINGS
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
