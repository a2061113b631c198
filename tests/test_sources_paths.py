"""What both sources answer about single paths, alike: one file's content (the root
``.gitopsignore``), the object id of files and directories (change detection over
every path a build read), and a typed error for a directory that is not there (a
missing kustomize base). Each test runs on the Git source (real Git server) and the
GitHub source (the GitHub stand-in)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syncworker.sources import GitHubSource, GitSource, Source
from syncworker.sources.base import SourceError, SourceNotFound, UnsafePathError
from syncworker.sources.github import BlobCache
from tests.support.gitserver import WorkingCopy
from tests.support.source_fixtures import GitHubRepo, add_symlink

FILES: dict[str, str | bytes | None] = {
    ".gitopsignore": "legacy/\n",
    "apps/web/base/kustomization.yaml": "resources: [cm.yaml]\n",
    "apps/web/base/cm.yaml": "kind: ConfigMap\n",
    "apps/web/overlay/kustomization.yaml": "resources: [../base]\n",
}

Made = tuple[Source, WorkingCopy]


@pytest.fixture(params=["git", "github"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Made]:
    """Makes the source under test and the working copy that pushes to its repository."""

    def git() -> Made:
        copy: WorkingCopy = request.getfixturevalue("git_repo")
        return GitSource(copy.url, branch="main", workspace=tmp_path), copy

    def github() -> Made:
        repo: GitHubRepo = request.getfixturevalue("github_repo")
        source = GitHubSource(
            owner=repo.owner,
            name=repo.name,
            branch="main",
            api_url=repo.github.api_url,
            cache=BlobCache(),
        )
        return source, repo.copy

    return git if request.param == "git" else github


def test_read_file_gives_the_content_at_that_commit_or_none(make: Callable[[], Made]) -> None:
    source, copy = make()
    first = copy.commit(FILES)
    second = copy.commit({".gitopsignore": "all-in-one/\n"})

    assert source.read_file(first, ".gitopsignore") == b"legacy/\n"
    assert source.read_file(second, ".gitopsignore") == b"all-in-one/\n"
    assert source.read_file(first, "apps/web/nope.yaml") is None
    assert source.read_file(first, "apps/web") is None, "a directory is no file"
    assert source.read_file(first, "nowhere/at/all") is None


def test_read_file_follows_a_symlink_inside_the_repository_only(
    make: Callable[[], Made],
) -> None:
    source, copy = make()
    add_symlink(copy, ".gitopsignore", "ops/ignore")
    others = {path: data for path, data in FILES.items() if path != ".gitopsignore"}
    commit = copy.commit({**others, "ops/ignore": "*.md\n"})
    assert source.read_file(commit, ".gitopsignore") == b"*.md\n"

    (copy.path / ".gitopsignore").unlink()
    add_symlink(copy, ".gitopsignore", "../../etc/passwd")
    outside = copy.commit({})
    with pytest.raises(UnsafePathError, match="leaves the repository"):
        source.read_file(outside, ".gitopsignore")


def test_tree_ids_give_files_their_blob_id_and_nothing_for_what_is_missing(
    make: Callable[[], Made],
) -> None:
    source, copy = make()
    first = copy.commit(FILES)
    second = copy.commit({".gitopsignore": "all-in-one/\n"})
    paths = [".gitopsignore", "apps/web/base", "apps/web/overlay", "apps/gone"]

    before, after = source.tree_ids(first, paths), source.tree_ids(second, paths)

    assert all(before[p] for p in paths[:3]) and before["apps/gone"] is None
    assert before[".gitopsignore"] != after[".gitopsignore"]
    assert before["apps/web/base"] == after["apps/web/base"]
    assert len({before[p] for p in paths[:3]}) == 3


def test_a_directory_that_is_not_there_is_a_typed_permanent_error(
    make: Callable[[], Made],
) -> None:
    source, copy = make()
    commit = copy.commit(FILES)

    for path in ("apps/api", ".gitopsignore"):
        with pytest.raises(SourceNotFound, match=f"'{path}' is not a directory") as caught:
            source.read_tree(commit, path)
        assert isinstance(caught.value, SourceError) and not caught.value.transient
