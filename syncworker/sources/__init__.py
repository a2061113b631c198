"""Where Git is read: one Source per repository, whatever the host."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syncworker.sources.base import (
    Head,
    Source,
    SourceError,
    SourceFile,
    SourceNotFound,
    UnsafePathError,
)
from syncworker.sources.git import GitSource
from syncworker.sources.github import GitHubSource

if TYPE_CHECKING:
    # Not imported at run time: this package must import before Django is set up.
    from syncworker.models import Repository

__all__ = [
    "GitHubSource",
    "GitSource",
    "Head",
    "Source",
    "SourceError",
    "SourceFile",
    "SourceNotFound",
    "UnsafePathError",
    "source_for",
]


def source_for(repo: Repository, *, workspace: Path) -> Source:
    """The Source that reads ``repo``; ``workspace`` holds the Git caches."""
    if repo.provider == "github":
        return GitHubSource(
            owner=repo.owner,
            name=repo.name,
            branch=repo.branch,
            token=repo.token,
            api_url=repo.api_url,
        )
    if repo.provider == "git":
        return GitSource(
            repo.url, branch=repo.branch, token=repo.token, workspace=workspace, key=repo.key
        )
    raise SourceError(f"{repo.key}: unknown provider {repo.provider!r}")
