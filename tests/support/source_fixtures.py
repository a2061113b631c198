"""Fixtures for the Git sources: the GitHub stand-in and repositories to push to.

Registered as a pytest plugin (``-p tests.support.source_fixtures``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fakegithub import FakeGitHub
from tests.support.gitserver import WorkingCopy


@dataclass
class GitHubRepo:
    """A repository on the GitHub stand-in and a working copy that pushes to it."""

    github: FakeGitHub
    owner: str
    name: str
    copy: WorkingCopy


@pytest.fixture(scope="session")
def fake_github() -> Iterator[FakeGitHub]:
    server = FakeGitHub().start()
    yield server
    server.stop()


@pytest.fixture
def github_repo(fake_github: FakeGitHub) -> Iterator[GitHubRepo]:
    """A new repository ``acme/repo-…``; the stand-in's switches and counters start clean."""
    fake_github.reset()
    name = f"repo-{uuid.uuid4().hex[:8]}"
    path = fake_github.create_repo("acme", name)
    copy = WorkingCopy(str(path))
    yield GitHubRepo(fake_github, "acme", name, copy)
    copy.cleanup()
    fake_github.reset()


def add_symlink(copy: WorkingCopy, path: str, target: str) -> None:
    """Create a symlink in the working copy (committed by the next ``copy.commit``)."""
    link = copy.path / path
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def add_submodule_link(copy: WorkingCopy, path: str, commit: str) -> None:
    """Stage a submodule entry (mode 160000) without cloning anything into it."""
    # An empty directory is what an unpopulated submodule looks like, so ``add -A`` in
    # the next commit keeps the entry.
    (copy.path / path).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "-C", str(copy.path), "update-index", "--add", "--cacheinfo",
         f"160000,{commit},{path}"],
        check=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(copy.path)},
    )  # fmt: skip


def bare_path(url: str, root: Path) -> Path:
    """The directory of a repository on a GitHttpServer, for ``file://`` access."""
    return root / url.rsplit("/", 1)[1]
