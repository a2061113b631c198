"""The GitHub source against the GitHub stand-in (tests/support/fakegithub.py), which
serves real Git repositories the way GitHub's REST API documents it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from syncworker.models import Repository
from syncworker.sources import GitHubSource, GitSource, source_for
from syncworker.sources.base import SourceError, SourceFile, UnsafePathError
from syncworker.sources.github import BlobCache
from tests.support.fakegithub import ANONYMOUS_LIMIT, AUTHENTICATED_LIMIT, FakeGitHub
from tests.support.procs import free_port
from tests.support.source_fixtures import GitHubRepo, add_submodule_link, add_symlink

TOKEN = "ghp_right_token_0123456789"
SERVICES = ["services/web", "services/api", "services/worker"]
MONOREPO: dict[str, str | bytes | None] = {
    "README.md": "# platform\n",
    "services/web/deployment.yaml": "kind: Deployment\nmetadata: {name: web}\n",
    "services/web/config/app.json": '{"port": 80}\n',
    "services/api/deployment.yaml": "kind: Deployment\nmetadata: {name: api}\n",
    "services/worker/deployment.yaml": "kind: Deployment\nmetadata: {name: worker}\n",
}


def source_of(repo: GitHubRepo, **options: Any) -> GitHubSource:
    """A source with a cache of its own, so request counts do not depend on test order."""
    return GitHubSource(
        owner=repo.owner,
        name=repo.name,
        branch="main",
        api_url=repo.github.api_url,
        cache=BlobCache(),
        **options,
    )


def paths_requested(github: FakeGitHub) -> list[str]:
    return [r.path for r in github.requests]


def test_a_no_change_poll_is_one_conditional_request_answered_304(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    source = source_of(github_repo)
    first = source.head()
    assert (first.commit, first.changed) == (commit, True)
    assert first.etag

    github_repo.github.reset_counters()
    head = source.head(etag=first.etag, last_commit=first.commit)

    assert (head.commit, head.changed, head.etag) == (commit, False, first.etag)
    [request] = github_repo.github.requests
    assert (request.method, request.status) == ("GET", 304)
    assert request.path == f"/repos/acme/{github_repo.name}/commits/main"
    assert request.bytes_in + request.bytes_out <= 2048


def test_an_authorized_304_costs_no_rate_limit(github_repo):
    github_repo.copy.commit(MONOREPO)
    source = source_of(github_repo, token=TOKEN)
    first = source.head()
    left = github_repo.github.remaining(TOKEN)

    for _ in range(3):
        source.head(etag=first.etag, last_commit=first.commit)

    assert [r.status for r in github_repo.github.requests[-3:]] == [304] * 3
    assert github_repo.github.remaining(TOKEN) == left == AUTHENTICATED_LIMIT - 1


def test_an_anonymous_304_counts_against_sixty_an_hour(github_repo):
    github_repo.copy.commit(MONOREPO)
    source = source_of(github_repo)
    first = source.head()

    for _ in range(3):
        source.head(etag=first.etag, last_commit=first.commit)

    assert [r.status for r in github_repo.github.requests[-3:]] == [304] * 3
    assert github_repo.github.remaining() == ANONYMOUS_LIMIT - 4


def test_an_etag_got_with_one_token_is_no_match_for_another(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    first = source_of(github_repo, token=TOKEN).head()

    github_repo.github.reset_counters()
    other = source_of(github_repo, token="ghp_another_token_0123456789")
    head = other.head(etag=first.etag, last_commit=commit)

    assert [r.status for r in github_repo.github.requests] == [200]
    assert (head.commit, head.changed) == (commit, False)
    assert head.etag and head.etag != first.etag
    assert other.head(etag=head.etag, last_commit=commit).changed is False
    assert github_repo.github.requests[-1].status == 304


def test_the_last_commit_alone_is_enough_for_a_304(github_repo):
    commit = github_repo.copy.commit(MONOREPO)

    head = source_of(github_repo).head(last_commit=commit)

    assert (head.commit, head.changed) == (commit, False)
    assert [r.status for r in github_repo.github.requests] == [304]


def test_the_head_moves_after_a_push(github_repo):
    first = github_repo.copy.commit(MONOREPO)
    source = source_of(github_repo)
    before = source.head()

    second = github_repo.copy.commit({"services/api/deployment.yaml": "kind: Service\n"})
    after = source.head(etag=before.etag, last_commit=before.commit)

    assert before.commit == first
    assert (after.commit, after.changed) == (second, True)
    assert after.etag and after.etag != before.etag


def test_tree_ids_tell_which_service_directory_changed_in_one_request(github_repo):
    first = github_repo.copy.commit(MONOREPO)
    second = github_repo.copy.commit({"services/api/deployment.yaml": "kind: Service\n"})
    source = source_of(github_repo)

    github_repo.github.reset_counters()
    before = source.tree_ids(first, [*SERVICES, "services/gone"])
    after = source.tree_ids(second, [*SERVICES, "services/gone"])

    assert len(github_repo.github.requests) == 2  # one per commit, whatever the services
    assert [s for s in SERVICES if before[s] != after[s]] == ["services/api"]
    assert all(before[s] for s in SERVICES)
    assert before["services/gone"] is None and after["services/gone"] is None


def test_tree_ids_accept_the_repository_root_and_sloppy_paths(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    source = source_of(github_repo)

    ids = source.tree_ids(commit, ["", "services/web/", "./services/web", "README.md", "nope"])

    assert ids[""] and ids["services/web/"] == ids["./services/web"]
    assert ids["README.md"] and ids["README.md"] != ids["services/web/"]  # a file's blob id
    assert ids["nope"] is None


def test_read_tree_returns_exactly_the_files_under_the_directory_at_that_commit(github_repo):
    old = github_repo.copy.commit(MONOREPO)
    github_repo.copy.commit(
        {"services/web/deployment.yaml": "kind: Changed\n", "services/web/new.yaml": "x: 1\n"}
    )

    files = source_of(github_repo).read_tree(old, "services/web")

    assert files == [
        SourceFile("services/web/config/app.json", b'{"port": 80}\n'),
        SourceFile("services/web/deployment.yaml", b"kind: Deployment\nmetadata: {name: web}\n"),
    ]


def test_read_tree_reads_each_blob_once_per_process(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    cache = BlobCache()
    options = {"owner": "acme", "name": github_repo.name, "branch": "main"}
    first = GitHubSource(**options, api_url=github_repo.github.api_url, cache=cache)
    first.read_tree(commit, "services/web")

    github_repo.github.reset_counters()
    again = GitHubSource(**options, api_url=github_repo.github.api_url, cache=cache)
    files = again.read_tree(commit, "services/web")

    assert len(files) == 2
    assert not [p for p in paths_requested(github_repo.github) if "/git/blobs/" in p]


def test_read_tree_of_a_missing_directory_is_a_permanent_error(github_repo):
    commit = github_repo.copy.commit(MONOREPO)

    with pytest.raises(SourceError, match="'services/nope' is not a directory") as caught:
        source_of(github_repo).read_tree(commit, "services/nope")
    assert not caught.value.transient


def test_a_symlink_inside_the_repository_reads_its_target(github_repo):
    add_symlink(github_repo.copy, "services/web/shared.yaml", "../../shared/base.yaml")
    add_symlink(github_repo.copy, "services/web/alias.yaml", "shared.yaml")
    commit = github_repo.copy.commit({**MONOREPO, "shared/base.yaml": "kind: ConfigMap\n"})

    files = {f.path: f.data for f in source_of(github_repo).read_tree(commit, "services/web")}

    assert files["services/web/shared.yaml"] == b"kind: ConfigMap\n"
    assert files["services/web/alias.yaml"] == b"kind: ConfigMap\n"


def test_a_symlink_leaving_the_repository_is_refused_naming_the_file(github_repo):
    add_symlink(github_repo.copy, "services/web/passwd.yaml", "../../../etc/passwd")
    commit = github_repo.copy.commit(MONOREPO)

    with pytest.raises(UnsafePathError, match=r"services/web/passwd\.yaml"):
        source_of(github_repo).read_tree(commit, "services/web")


def test_submodules_are_skipped(github_repo):
    first = github_repo.copy.commit(MONOREPO)
    add_submodule_link(github_repo.copy, "services/web/vendored", first)
    commit = github_repo.copy.commit({})

    files = source_of(github_repo).read_tree(commit, "services/web")

    assert [f.path for f in files] == [
        "services/web/config/app.json",
        "services/web/deployment.yaml",
    ]


def test_a_truncated_tree_falls_back_to_walking_and_gives_the_same_answers(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    expected_ids = source_of(github_repo).tree_ids(commit, SERVICES)
    expected_files = source_of(github_repo).read_tree(commit, "services/web")

    github_repo.github.force_truncated = True
    github_repo.github.reset_counters()
    ids = source_of(github_repo).tree_ids(commit, SERVICES)
    files = source_of(github_repo).read_tree(commit, "services/web")

    assert (ids, files) == (expected_ids, expected_files)
    assert any("recursive" not in p for p in paths_requested(github_repo.github))


@pytest.mark.parametrize("status", [403, 429])
def test_the_primary_rate_limit_is_transient_and_waits_for_its_reset(github_repo, status):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.primary_limit_status = status
    github_repo.github.rate_limited = True
    github_repo.github.rate_limit_reset_in = 90

    with pytest.raises(SourceError, match="rate limit") as caught:
        source_of(github_repo).head()

    assert caught.value.transient
    assert caught.value.retry_after is not None and 80 <= caught.value.retry_after <= 91
    assert [r.status for r in github_repo.github.requests] == [status]


def test_the_rate_limit_is_enforced_at_zero_until_a_reset_that_stays_put(github_repo):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.anonymous_limit = 3
    url = f"{github_repo.github.api_url}/repos/acme/{github_repo.name}/commits/main"
    answers = []
    for _ in range(2):
        answers.append(requests.get(url, timeout=5))
        time.sleep(1.1)  # a reset that moved with each answer would show it
    source = source_of(github_repo)
    source.head()

    started = time.time()
    with pytest.raises(SourceError, match="rate limit") as caught:
        source.head()

    assert [r.status for r in github_repo.github.requests] == [200, 200, 200, 403]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1"]
    [reset] = {int(a.headers["X-RateLimit-Reset"]) for a in answers}
    assert caught.value.transient and caught.value.retry_after is not None
    assert abs(started + caught.value.retry_after - reset) <= 2
    assert github_repo.github.remaining() == 0


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [(403, 42, 42), (429, 42, 42), (403, None, 60), (429, None, 60)],
)
def test_a_secondary_rate_limit_is_transient_and_waits_as_told_or_a_minute(
    github_repo, status, retry_after, wait
):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.secondary_limit = (status, retry_after)

    with pytest.raises(SourceError, match="secondary rate limit") as caught:
        source_of(github_repo).head()

    assert (caught.value.transient, caught.value.retry_after) == (True, wait)
    [request] = github_repo.github.requests
    assert request.status == status


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_transient(github_repo, status):
    commit = github_repo.copy.commit(MONOREPO)
    github_repo.github.server_error = status

    with pytest.raises(SourceError, match=f"GitHub answered {status}") as caught:
        source_of(github_repo).read_tree(commit, "services/web")

    assert caught.value.transient and caught.value.retry_after is None


def test_an_answer_that_never_comes_is_a_transient_timeout(github_repo):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.stall_seconds = 5
    source = source_of(github_repo, timeout=(1.0, 0.5))

    started = time.monotonic()
    with pytest.raises(SourceError, match="did not answer in time") as caught:
        source.head()

    assert caught.value.transient
    assert time.monotonic() - started < 3


def test_an_answer_cut_off_halfway_is_a_transient_timeout(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    github_repo.github.stall_seconds = 5
    github_repo.github.stall_after_bytes = 600  # the headers and a little of the tree
    source = source_of(github_repo, timeout=(1.0, 0.5))

    started = time.monotonic()
    with pytest.raises(SourceError, match="did not answer in time") as caught:
        source.tree_ids(commit, SERVICES)

    assert caught.value.transient
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirect_to_another_host_is_followed_without_the_token(github_repo, status):
    commit = github_repo.copy.commit(MONOREPO)
    github_repo.github.redirect = (status, "localhost")

    head = source_of(github_repo, token=TOKEN).head()

    assert head.commit == commit
    sent = [(r.host, r.status, r.authorized) for r in github_repo.github.requests]
    assert sent == [("127.0.0.1", status, True), ("localhost", 200, False)]


def test_a_redirected_private_repository_is_not_found_rather_than_given_the_token(github_repo):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.token = TOKEN
    github_repo.github.redirect = (307, "localhost")

    with pytest.raises(SourceError, match="not found") as caught:
        source_of(github_repo, token=TOKEN).head()

    assert not caught.value.transient
    assert [r.authorized for r in github_repo.github.requests] == [True, False]


def test_a_wrong_token_is_a_permanent_authentication_failure_that_hides_the_token(
    github_repo,
):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.token = TOKEN
    secret = "ghp_wrong_token_0123456789"

    with pytest.raises(SourceError, match="authentication failed") as caught:
        source_of(github_repo, token=secret).head()

    assert not caught.value.transient
    assert secret not in str(caught.value) and secret not in repr(caught.value)


def test_the_token_is_sent_as_a_bearer_token(github_repo):
    commit = github_repo.copy.commit(MONOREPO)
    github_repo.github.token = TOKEN

    head = source_of(github_repo, token=TOKEN).head()

    assert head.commit == commit
    assert github_repo.github.remaining(TOKEN) == AUTHENTICATED_LIMIT - 1


def test_an_unknown_repository_or_branch_is_permanent(github_repo):
    github_repo.copy.commit(MONOREPO)
    api = github_repo.github.api_url
    missing_repo = GitHubSource(owner="acme", name="nope", branch="main", api_url=api)
    missing_branch = GitHubSource(owner="acme", name=github_repo.name, branch="nope", api_url=api)

    for source in (missing_repo, missing_branch):
        with pytest.raises(SourceError, match="not found") as caught:
            source.head()
        assert not caught.value.transient


def test_an_unreachable_api_is_transient():
    source = GitHubSource(
        owner="acme", name="repo", branch="main", api_url=f"http://127.0.0.1:{free_port()}"
    )

    with pytest.raises(SourceError) as caught:
        source.head()

    assert caught.value.transient


def test_a_rate_limit_reset_in_the_past_still_waits_a_little(github_repo):
    github_repo.copy.commit(MONOREPO)
    github_repo.github.rate_limited = True
    github_repo.github.rate_limit_reset_in = -30

    with pytest.raises(SourceError) as caught:
        source_of(github_repo).head()

    assert caught.value.retry_after == 1.0


def test_source_for_picks_the_source_of_the_provider(tmp_path):
    github = Repository(key="a", provider="github", owner="acme", name="web", branch="main")
    git = Repository(key="b", provider="git", url="https://git.example.com/web.git")

    assert isinstance(source_for(github, workspace=tmp_path), GitHubSource)
    assert isinstance(source_for(git, workspace=tmp_path), GitSource)
