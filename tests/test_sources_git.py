"""The Git source against a real Git server (git http-backend on loopback) and against
``file://`` repositories."""

from __future__ import annotations

import fcntl
import threading
import time
import uuid

import pytest

from syncworker.sources import GitSource
from syncworker.sources.base import SourceError, SourceFile, UnsafePathError
from syncworker.sources.git import LIST_SIBLINGS_FROM
from tests.support.gitserver import GitHttpServer, RequestRecord, WorkingCopy
from tests.support.procs import free_port
from tests.support.source_fixtures import add_submodule_link, add_symlink, bare_path

SERVICES = ["services/web", "services/api", "services/worker"]
MONOREPO: dict[str, str | bytes | None] = {
    "README.md": "# platform\n",
    "services/web/deployment.yaml": "kind: Deployment\nmetadata: {name: web}\n",
    "services/web/config/app.json": '{"port": 80}\n',
    "services/api/deployment.yaml": "kind: Deployment\nmetadata: {name: api}\n",
    "services/worker/deployment.yaml": "kind: Deployment\nmetadata: {name: worker}\n",
}
TOKEN = "glpat-secret-token-0123456789"


def requests_after(server: GitHttpServer, action) -> list[RequestRecord]:
    """The requests ``action`` made. The server records a request just after answering
    it, so give stragglers a moment before counting."""
    server.reset_counters()
    action()
    time.sleep(0.2)
    return list(server.requests)


@pytest.fixture
def source(git_repo: WorkingCopy, tmp_path) -> GitSource:
    return GitSource(git_repo.url, branch="main", workspace=tmp_path)


@pytest.fixture
def private_server():
    server = GitHttpServer(auth=("x-access-token", TOKEN)).start()
    yield server
    server.stop()


@pytest.fixture
def private_repo(private_server: GitHttpServer):
    url = private_server.create_repo(f"private-{uuid.uuid4().hex[:8]}")
    # The working copy pushes with the token in its URL; the source never does that.
    copy = WorkingCopy(url.replace("http://", f"http://x-access-token:{TOKEN}@"))
    yield url, copy
    copy.cleanup()


def test_a_no_change_poll_is_one_get_of_info_refs(git_server, git_repo, source):
    commit = git_repo.commit(MONOREPO)
    first = source.head()
    assert (first.commit, first.changed) == (commit, True)

    [request] = requests_after(git_server, lambda: source.head(last_commit=commit))

    assert (request.method, request.status) == ("GET", 200)
    assert request.path.endswith("/info/refs")
    assert request.bytes_out <= 2048
    assert not source.head(last_commit=commit).changed


def test_the_head_moves_after_a_push(git_repo, source):
    first = git_repo.commit(MONOREPO)
    second = git_repo.commit({"services/api/deployment.yaml": "kind: Service\n"})

    head = source.head(last_commit=first)

    assert (head.commit, head.changed) == (second, True)


def test_a_missing_branch_is_a_permanent_error(git_repo, tmp_path):
    git_repo.commit(MONOREPO)
    source = GitSource(git_repo.url, branch="release", workspace=tmp_path)

    with pytest.raises(SourceError, match="branch 'release' not found") as caught:
        source.head()
    assert not caught.value.transient


def test_tree_ids_tell_which_service_directory_changed(git_repo, source):
    first = git_repo.commit(MONOREPO)
    second = git_repo.commit({"services/api/deployment.yaml": "kind: Service\n"})

    before = source.tree_ids(first, [*SERVICES, "services/gone", "README.md", ""])
    after = source.tree_ids(second, [*SERVICES, "services/gone", "README.md", ""])

    assert [s for s in SERVICES if before[s] != after[s]] == ["services/api"]
    assert all(before[s] for s in SERVICES)
    assert before["services/gone"] is None
    assert before["README.md"] and before["README.md"] == after["README.md"]  # its blob id
    assert before[""] != after[""]


def test_tree_ids_of_many_sibling_directories_match_one_by_one_lookups(git_repo, source):
    many = [f"services/s{i:02d}" for i in range(LIST_SIBLINGS_FROM + 4)]
    files = {
        f"{d}/cm.yaml": f"kind: ConfigMap\nmetadata: {{name: {i}}}\n" for i, d in enumerate(many)
    }
    files["services/notes.txt"] = "a file among the directories\n"
    commit = git_repo.commit({**MONOREPO, **files})
    asked = [*many, "services/notes.txt", "services/gone", "services/web/config", *SERVICES]

    together = source.tree_ids(commit, asked)  # services/ is listed once
    alone = {path: source.tree_ids(commit, [path])[path] for path in asked}  # cat-file each

    assert together == alone
    assert all(together[d] for d in many) and len({together[d] for d in many}) == len(many)
    assert together["services/notes.txt"] and together["services/gone"] is None


def test_read_tree_returns_exactly_the_files_under_the_directory_at_that_commit(git_repo, source):
    old = git_repo.commit(MONOREPO)
    new = git_repo.commit(
        {"services/web/deployment.yaml": "kind: Changed\n", "services/web/new.yaml": "x: 1\n"}
    )
    source.ensure_commit(new)

    files = source.read_tree(old, "services/web")

    assert files == [
        SourceFile("services/web/config/app.json", b'{"port": 80}\n'),
        SourceFile("services/web/deployment.yaml", b"kind: Deployment\nmetadata: {name: web}\n"),
    ]


def test_read_tree_of_a_missing_directory_is_a_permanent_error(git_repo, source):
    commit = git_repo.commit(MONOREPO)

    with pytest.raises(SourceError, match="'services/nope' is not a directory") as caught:
        source.read_tree(commit, "services/nope")
    assert not caught.value.transient


def test_a_symlink_inside_the_repository_reads_its_target(git_repo, source):
    add_symlink(git_repo, "services/web/shared.yaml", "../../shared/base.yaml")
    add_symlink(git_repo, "services/web/alias.yaml", "shared.yaml")
    commit = git_repo.commit({**MONOREPO, "shared/base.yaml": "kind: ConfigMap\n"})

    files = {f.path: f.data for f in source.read_tree(commit, "services/web")}

    assert files["services/web/shared.yaml"] == b"kind: ConfigMap\n"
    assert files["services/web/alias.yaml"] == b"kind: ConfigMap\n"


def test_a_symlink_leaving_the_repository_is_refused_naming_the_file(git_repo, source):
    add_symlink(git_repo, "services/web/passwd.yaml", "../../../etc/passwd")
    commit = git_repo.commit(MONOREPO)

    with pytest.raises(UnsafePathError, match=r"services/web/passwd\.yaml"):
        source.read_tree(commit, "services/web")


def test_submodules_are_skipped(git_repo, source):
    first = git_repo.commit(MONOREPO)
    add_submodule_link(git_repo, "services/web/vendored", first)
    commit = git_repo.commit({})

    files = source.read_tree(commit, "services/web")

    assert [f.path for f in files] == [
        "services/web/config/app.json",
        "services/web/deployment.yaml",
    ]


def test_the_cache_fetches_only_when_the_commit_is_missing(git_server, git_repo, tmp_path):
    first = git_repo.commit(MONOREPO)
    source = GitSource(git_repo.url, branch="main", workspace=tmp_path)

    fetched = requests_after(git_server, lambda: source.tree_ids(first, SERVICES))
    reread = requests_after(git_server, lambda: source.read_tree(first, "services/web"))
    # Another task on this machine shares the cache.
    other = GitSource(git_repo.url, branch="main", workspace=tmp_path)
    shared = requests_after(git_server, lambda: other.tree_ids(first, SERVICES))
    second = git_repo.commit({"services/api/deployment.yaml": "kind: Service\n"})
    moved = requests_after(git_server, lambda: other.tree_ids(second, SERVICES))

    assert any(r.method == "POST" for r in fetched)
    assert (reread, shared) == ([], [])
    assert any(r.method == "POST" for r in moved)


def test_a_fetch_waits_for_the_cache_lock(git_server, git_repo, source):
    commit = git_repo.commit(MONOREPO)
    source.head()  # creates the cache
    git_server.reset_counters()
    done = threading.Event()

    def fetch() -> None:
        source.ensure_commit(commit)
        done.set()

    with open(source.lock_path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        threading.Thread(target=fetch, daemon=True).start()
        time.sleep(0.5)
        assert not done.is_set() and not git_server.requests
        fcntl.flock(held, fcntl.LOCK_UN)

    assert done.wait(timeout=30)
    assert source.tree_ids(commit, ["services/web"])["services/web"]


def test_a_server_refusing_an_unadvertised_commit_makes_it_fetch_the_branch(
    git_server, git_repo, tmp_path
):
    first = git_repo.commit(MONOREPO)
    second = git_repo.commit({"services/api/deployment.yaml": "kind: Service\n"})
    repo_dir = bare_path(git_repo.url, git_server.root)
    (repo_dir / "config").write_text(
        (repo_dir / "config").read_text().replace("allowReachableSHA1InWant = true", "")
    )
    # Protocol v0 is where a server refuses a commit id it did not advertise.
    home = tmp_path / "git" / "home"
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text("[protocol]\n\tversion = 0\n")
    source = GitSource(git_repo.url, branch="main", workspace=tmp_path)

    with pytest.raises(SourceError, match="branch 'main' has moved on") as caught:
        source.ensure_commit(first)
    assert not caught.value.transient
    # The branch fetch brought the tip: it needs no fetch of its own.
    assert requests_after(git_server, lambda: source.ensure_commit(second)) == []


def test_file_urls_work(git_server, git_repo, tmp_path):
    commit = git_repo.commit(MONOREPO)
    url = f"file://{bare_path(git_repo.url, git_server.root)}"
    source = GitSource(url, branch="main", workspace=tmp_path)

    assert source.head().commit == commit
    assert source.tree_ids(commit, ["services/web"])["services/web"]
    assert [f.path for f in source.read_tree(commit, "services/api")] == [
        "services/api/deployment.yaml"
    ]


def test_a_token_is_sent_as_basic_auth_and_kept_out_of_the_cache(private_repo, tmp_path):
    url, copy = private_repo
    commit = copy.commit(MONOREPO)
    source = GitSource(url, branch="main", workspace=tmp_path, token=TOKEN)

    assert source.head().commit == commit
    assert [f.path for f in source.read_tree(commit, "services/api")] == [
        "services/api/deployment.yaml"
    ]
    for path in source.cache_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("token", ["glpat-wrong-token-9876543210", ""])
def test_a_wrong_or_missing_token_is_a_permanent_failure_that_hides_it(
    private_repo, tmp_path, token
):
    url, copy = private_repo
    copy.commit(MONOREPO)
    source = GitSource(url, branch="main", workspace=tmp_path, token=token)

    with pytest.raises(SourceError, match="authentication failed") as caught:
        source.head()

    assert not caught.value.transient
    assert TOKEN not in str(caught.value)
    assert not token or token not in str(caught.value)


def test_a_token_in_the_url_never_reaches_a_message(private_server, tmp_path):
    url = private_server.create_repo("nothing-pushed").replace(
        "http://", f"http://x-access-token:{TOKEN}@"
    )
    source = GitSource(url, branch="main", workspace=tmp_path)

    with pytest.raises(SourceError) as caught:
        source.head()

    assert TOKEN not in str(caught.value)


def test_an_unknown_repository_is_permanent(git_server, tmp_path):
    source = GitSource(f"{git_server.base_url}/nope.git", branch="main", workspace=tmp_path)

    with pytest.raises(SourceError, match="not found") as caught:
        source.head()
    assert not caught.value.transient


def test_an_unreachable_host_is_transient(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/repo.git"

    with pytest.raises(SourceError) as caught:
        GitSource(url, branch="main", workspace=tmp_path).head()
    assert caught.value.transient


@pytest.mark.parametrize(
    ("url", "branch"),
    [("ext::sh -c touch% /tmp/pwned", "main"), ("https://git.example.com/r.git", "-x")],
)
def test_unsupported_urls_and_branch_names_are_refused_on_first_use(url, branch, tmp_path):
    source = GitSource(url, branch=branch, workspace=tmp_path)

    with pytest.raises(SourceError) as caught:
        source.head()
    assert not caught.value.transient
