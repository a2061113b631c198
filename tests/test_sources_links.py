"""Symlinks in a service directory, on both sources alike: a link is read as its target
inside the repository, and refused when it leads out of it, however it gets there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncworker.sources import GitHubSource, GitSource, Source
from syncworker.sources.base import MAX_SYMLINK_HOPS, SourceError, SourceFile, UnsafePathError
from syncworker.sources.github import BlobCache
from tests.support.gitserver import WorkingCopy
from tests.support.source_fixtures import GitHubRepo, add_symlink

BASE: dict[str, str | bytes | None] = {
    "services/web/deployment.yaml": "kind: Deployment\n",
    "shared/base.yaml": "kind: X\n",
}


@dataclass
class Repo:
    copy: WorkingCopy
    source: Callable[[], Source]


@pytest.fixture(params=["git", "github"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repo]:
    if request.param == "git":
        copy: WorkingCopy = request.getfixturevalue("git_repo")
        yield Repo(copy, lambda: GitSource(copy.url, branch="main", workspace=tmp_path))
    else:
        github: GitHubRepo = request.getfixturevalue("github_repo")
        yield Repo(
            github.copy,
            lambda: GitHubSource(
                owner=github.owner,
                name=github.name,
                branch="main",
                api_url=github.github.api_url,
                cache=BlobCache(),
            ),
        )


def read_web(repo: Repo, links: dict[str, str]) -> list[SourceFile]:
    """Commit BASE plus ``links`` (path -> target) and read services/web, giving up after
    30 s so that a link loop fails the test instead of hanging it."""
    for path, target in links.items():
        add_symlink(repo.copy, path, target)
    commit = repo.copy.commit(BASE)
    outcome: list[list[SourceFile] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(repo.source().read_tree(commit, "services/web"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, "read_tree did not finish in 30 s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_a_chain_of_links_inside_the_repository_reads_the_last_target(repo):
    files = read_web(
        repo,
        {
            "services/web/a.yaml": "b.yaml",
            "services/web/b.yaml": "../../shared/c.yaml",
            "shared/c.yaml": "base.yaml",
        },
    )

    contents = {f.path: f.data for f in files}
    assert contents["services/web/a.yaml"] == contents["services/web/b.yaml"] == b"kind: X\n"


def test_a_link_to_an_absolute_path_is_refused_naming_it(repo):
    with pytest.raises(UnsafePathError, match=r"services/web/passwd\.yaml: .*absolute.*/etc"):
        read_web(repo, {"services/web/passwd.yaml": "/etc/passwd"})


@pytest.mark.parametrize(
    "links",
    [
        {"services/web/a.yaml": "a.yaml"},
        {"services/web/a.yaml": "b.yaml", "services/web/b.yaml": "a.yaml"},
        {"services/web/a.yaml": "../../shared/b.yaml", "shared/b.yaml": "../services/web/a.yaml"},
    ],
    ids=["itself", "two-in-a-ring", "ring-through-another-directory"],
)
def test_a_link_cycle_ends_with_an_error_instead_of_looping(repo, links):
    with pytest.raises(SourceError, match=r"services/web/a\.yaml: too many levels") as caught:
        read_web(repo, links)
    assert not caught.value.transient


def test_a_chain_longer_than_the_hop_limit_is_refused(repo):
    hops = MAX_SYMLINK_HOPS + 1
    links = {f"services/web/l{i}.yaml": f"l{i + 1}.yaml" for i in range(hops)}
    links[f"services/web/l{hops}.yaml"] = "deployment.yaml"

    with pytest.raises(SourceError, match=r"services/web/l0\.yaml: too many levels"):
        read_web(repo, links)


@pytest.mark.parametrize(
    "escape", ["../../etc/passwd", "/etc/passwd"], ids=["relative", "absolute"]
)
def test_a_link_that_escapes_on_its_second_hop_is_refused_naming_both(repo, escape):
    links = {"services/web/a.yaml": "../../shared/b.yaml", "shared/b.yaml": escape}

    with pytest.raises(UnsafePathError) as caught:
        read_web(repo, links)

    message = str(caught.value)
    assert message.startswith("services/web/a.yaml: shared/b.yaml: ")
    assert escape in message


def test_a_link_to_a_directory_is_refused(repo):
    with pytest.raises(SourceError, match=r"services/web/all\.yaml: symlink to directory"):
        read_web(repo, {"services/web/all.yaml": "../../shared"})
