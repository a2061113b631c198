"""Size limits on both sources: a file over the limit is refused before it is read
whole (the Git source asks for sizes first, the GitHub source streams and stops), so a
huge blob in a repository costs neither memory nor a long download."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from syncworker.sources import GitHubSource, GitSource, Source
from syncworker.sources.base import MAX_FILE_BYTES, MAX_TOTAL_BYTES, FileTooLargeError
from syncworker.sources.github import BlobCache
from tests.support.gitserver import WorkingCopy
from tests.support.source_fixtures import GitHubRepo

HUGE = 3 * MAX_FILE_BYTES  # 12 MB of zeros (a few KB once compressed): under the total
SMALL: dict[str, str | bytes | None] = {"services/web/deployment.yaml": "kind: Deployment\n"}
HUGE_MESSAGE = rf"^services/web/huge\.yaml: {HUGE} bytes, more than the limit of {MAX_FILE_BYTES}$"


def github_source(repo: GitHubRepo, *, timeout: tuple[float, float]) -> GitHubSource:
    return GitHubSource(
        owner=repo.owner,
        name=repo.name,
        branch="main",
        api_url=repo.github.api_url,
        cache=BlobCache(),
        timeout=timeout,
    )


def test_git_refuses_a_huge_file_without_reading_it_into_memory(git_repo: WorkingCopy, tmp_path):
    commit = git_repo.commit({**SMALL, "services/web/huge.yaml": b"\0" * HUGE})
    source = GitSource(git_repo.url, branch="main", workspace=tmp_path)
    source.ensure_commit(commit)  # the fetch is git's own business, in its own process

    tracemalloc.start()
    try:
        with pytest.raises(FileTooLargeError, match=HUGE_MESSAGE) as caught:
            source.read_tree(commit, "services/web")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert not caught.value.transient
    assert peak < MAX_FILE_BYTES  # reading the blob would have held all 12 MB


def test_git_refuses_files_over_the_total_limit_before_reading_them(git_repo, tmp_path):
    count = MAX_TOTAL_BYTES // (MAX_FILE_BYTES - 1) + 1
    # Different contents: one blob for identical files is read (and counted) once.
    files: dict[str, str | bytes | None] = {
        f"services/web/f{i}.yaml": bytes([i]) * (MAX_FILE_BYTES - 1) for i in range(count)
    }
    commit = git_repo.commit(files)
    source = GitSource(git_repo.url, branch="main", workspace=tmp_path)
    source.ensure_commit(commit)

    tracemalloc.start()
    try:
        with pytest.raises(FileTooLargeError, match=f"more than {MAX_TOTAL_BYTES} bytes"):
            source.read_tree(commit, "services/web")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < MAX_FILE_BYTES


def test_github_refuses_a_huge_file_without_downloading_it(github_repo: GitHubRepo):
    commit = github_repo.copy.commit({**SMALL, "services/web/huge.yaml": b"\0" * HUGE})
    # The stand-in holds the rest of the blob back after the limit (and some): a source
    # that read on would wait for it and time out.
    github_repo.github.stall_after_bytes = MAX_FILE_BYTES + 1024 * 1024
    github_repo.github.stall_seconds = 20
    source = github_source(github_repo, timeout=(2.0, 2.0))

    started = time.monotonic()
    with pytest.raises(FileTooLargeError, match=HUGE_MESSAGE) as caught:
        source.read_tree(commit, "services/web")

    assert not caught.value.transient
    assert time.monotonic() - started < 2


def test_github_stops_streaming_at_the_limit_when_the_size_is_not_announced(
    github_repo: GitHubRepo, monkeypatch: pytest.MonkeyPatch
):
    commit = github_repo.copy.commit({**SMALL, "services/web/huge.yaml": b"\0" * HUGE})
    github_repo.github.stall_after_bytes = MAX_FILE_BYTES + 1024 * 1024
    github_repo.github.stall_seconds = 20
    github_repo.github.chunked_blobs = True  # no Content-Length: only the stream tells
    source = github_source(github_repo, timeout=(2.0, 2.0))

    started = time.monotonic()
    with pytest.raises(
        FileTooLargeError, match=r"^services/web/huge\.yaml: more than the limit of \d+$"
    ):
        source.read_tree(commit, "services/web")

    assert time.monotonic() - started < 2


def test_github_refuses_files_over_the_total_limit(github_repo: GitHubRepo):
    count = MAX_TOTAL_BYTES // (MAX_FILE_BYTES - 1) + 1
    files: dict[str, str | bytes | None] = {
        f"services/web/f{i}.yaml": bytes([i]) * (MAX_FILE_BYTES - 1) for i in range(count)
    }
    commit = github_repo.copy.commit(files)

    with pytest.raises(FileTooLargeError, match=f"more than {MAX_TOTAL_BYTES} bytes"):
        github_source(github_repo, timeout=(5.0, 30.0)).read_tree(commit, "services/web")

    blobs = [r for r in github_repo.github.requests if "/git/blobs/" in r.path]
    assert len(blobs) == count  # it stopped at the file that went over, not before


def test_a_file_at_the_limit_is_read(github_repo: GitHubRepo, git_repo: WorkingCopy, tmp_path):
    exact: dict[str, str | bytes | None] = {**SMALL, "services/web/big.yaml": b"#" * MAX_FILE_BYTES}
    git_commit = git_repo.commit(exact)
    github_commit = github_repo.copy.commit(exact)

    sources: list[tuple[Source, str]] = [
        (GitSource(git_repo.url, branch="main", workspace=tmp_path), git_commit),
        (github_source(github_repo, timeout=(5.0, 30.0)), github_commit),
    ]
    for source, commit in sources:
        files = {f.path: f.data for f in source.read_tree(commit, "services/web")}
        assert len(files["services/web/big.yaml"]) == MAX_FILE_BYTES
