"""How many git processes the Git source starts, and that reading less often answers the
same: one directory is two processes, a prefetched batch of directories two in all,
and every read answers alike with and without the prefetch (real Git server)."""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from syncworker.sources import GitSource
from syncworker.sources import git as git_module
from syncworker.sources.base import MAX_FILE_BYTES, FileTooLargeError, SourceNotFound
from tests.support.gitserver import WorkingCopy
from tests.support.source_fixtures import add_submodule_link, add_symlink

BATCH = [f"services/s{i:02d}" for i in range(20)]
FILES: dict[str, str | bytes | None] = {
    "README.md": "# platform\n",
    "shared/base.yaml": "kind: ConfigMap\nmetadata: {name: shared}\n",
}
for _i, _d in enumerate(BATCH):
    FILES[f"{_d}/deployment.yaml"] = f"kind: Deployment\nmetadata: {{name: s{_i}}}\n"
    FILES[f"{_d}/config/app.json"] = f'{{"service": {_i}}}\n'


def fresh(copy: WorkingCopy, tmp_path) -> GitSource:
    return GitSource(copy.url, branch="main", workspace=tmp_path)


def processes(source: GitSource, action: Callable[[], Any]) -> int:
    before = source.processes
    action()
    return source.processes - before


def outcome(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a read answered, or the error it raised (type and message)."""
    try:
        return "ok", call(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def render_like_the_fetch_stage(source: GitSource, commit: str) -> None:
    """The reads the fetch stage makes for each plain service of the batch: its
    directory, the root .gitopsignore, then the ids of what it read."""
    for directory in BATCH:
        source.read_tree(commit, directory)
        source.read_file(commit, ".gitopsignore")
        source.tree_ids(commit, [directory, ".gitopsignore"])


def test_a_directory_at_a_commit_in_the_cache_is_read_by_two_git_processes(git_repo, tmp_path):
    commit = git_repo.commit(FILES)
    fresh(git_repo, tmp_path).ensure_commit(commit)  # another task fetched it
    source = fresh(git_repo, tmp_path)

    first = processes(source, lambda: source.read_tree(commit, "services/s00"))
    other = processes(source, lambda: source.read_tree(commit, "services/s01"))
    again = processes(source, lambda: source.read_tree(commit, "services/s00"))

    # ls-tree -r -t -l (the directory check, the files and their sizes) and cat-file
    # --batch: no cat-file -e, no separate directory check, no --batch-check.
    assert (first, other) == (2, 2)
    assert again == 0, "a listing and blobs already read are kept"


def test_ids_after_a_read_come_from_its_listing_with_no_check_of_the_commit(git_repo, tmp_path):
    commit = git_repo.commit(FILES)
    source = fresh(git_repo, tmp_path)
    source.read_tree(commit, "services/s00")

    inside = ["services/s00", "services/s00/config/app.json", "services/s00/gone.yaml"]
    listed = processes(source, lambda: source.tree_ids(commit, inside))
    elsewhere = processes(source, lambda: source.tree_ids(commit, ["README.md", "services/gone"]))

    assert listed == 0, "the listing the read made tells, also what is not there"
    assert source.tree_ids(commit, inside)["services/s00/gone.yaml"] is None
    assert elsewhere == 1, "one cat-file --batch-check, the commit already known present"


def test_a_prefetched_batch_of_twenty_services_costs_two_git_processes_in_all(git_repo, tmp_path):
    commit = git_repo.commit(FILES)
    fresh(git_repo, tmp_path).ensure_commit(commit)
    source = fresh(git_repo, tmp_path)

    prefetch = processes(source, lambda: source.prefetch(commit, BATCH))
    reads = processes(source, lambda: [source.read_tree(commit, d) for d in BATCH])
    rest = processes(source, partial(render_like_the_fetch_stage, source, commit))

    assert prefetch == 2, "one ls-tree for all directories, one cat-file --batch"
    assert reads == 0
    # The absent root .gitopsignore is looked up once for the batch, then known absent.
    assert prefetch + reads + rest <= 3


def test_without_prefetch_the_same_batch_starts_git_for_every_service(git_repo, tmp_path):
    """The figure the prefetch saves, and a check that the counter counts."""
    commit = git_repo.commit(FILES)
    fresh(git_repo, tmp_path).ensure_commit(commit)
    source = fresh(git_repo, tmp_path)

    count = processes(source, partial(render_like_the_fetch_stage, source, commit))

    assert count >= 2 * len(BATCH)


def test_every_read_answers_the_same_with_and_without_prefetch(git_repo, tmp_path):
    add_symlink(git_repo, "services/s00/shared.yaml", "../../shared/base.yaml")  # out
    add_symlink(git_repo, "services/s00/alias.yaml", "deployment.yaml")  # inside
    add_symlink(git_repo, "services/s01/sibling.yaml", "../s02/deployment.yaml")  # other dir
    add_symlink(git_repo, "services/s03/passwd.yaml", "../../../etc/passwd")  # escapes
    add_symlink(git_repo, "services/s04/dir.yaml", "../s05")  # a directory
    first = git_repo.commit(FILES)
    add_submodule_link(git_repo, "services/s06/vendored", first)
    commit = git_repo.commit(
        {"services/s07/huge.yaml": b"\0" * (MAX_FILE_BYTES + 1), "services/file": "not a dir\n"}
    )
    asked = [*BATCH, "services/missing", "services/file", "shared"]
    reads: list[tuple[str, Any]] = []
    for d in asked:
        reads += [("read_tree", d), ("read_file", f"{d}/deployment.yaml")]
    reads += [
        ("read_tree", "services/s00/config"),  # under a prefetched one
        ("read_tree", "services/s06/vendored"),
        ("read_tree", "services/s07/huge.yaml"),
        ("read_file", "services/s00/shared.yaml"),
        ("read_file", "services/s00/config"),
        ("read_file", "services/s06/vendored"),
        ("read_file", "services/s07/huge.yaml"),
        ("read_file", "README.md"),
        ("tree_ids", [*asked, "services/s06/vendored", "services/s00/alias.yaml"]),
        ("tree_ids", ["services/file/x", "services/s00/config", "", "services"]),
    ]

    plain = [outcome(getattr(fresh(git_repo, tmp_path), m), commit, arg) for m, arg in reads]
    prefetched = fresh(git_repo, tmp_path)
    prefetched.prefetch(commit, asked)
    warm = [outcome(getattr(prefetched, m), commit, arg) for m, arg in reads]

    assert warm == plain
    kinds = {kind for kind, _ in plain}
    assert kinds == {"ok", "SourceNotFound", "UnsafePathError", "SourceError", "FileTooLargeError"}
    assert ("FileTooLargeError", f"services/s07/huge.yaml: {MAX_FILE_BYTES + 1} bytes, more "
            f"than the limit of {MAX_FILE_BYTES}") in plain  # fmt: skip
    kind, files = outcome(lambda: fresh(git_repo, tmp_path).read_tree(commit, "services/s00"))
    assert kind == "ok" and len(files) == 4  # the comparison above was over real content


def test_prefetch_never_reads_a_blob_over_the_limit(git_repo, tmp_path):
    huge = 3 * MAX_FILE_BYTES
    commit = git_repo.commit({**FILES, "services/s07/huge.yaml": b"\0" * huge})
    source = fresh(git_repo, tmp_path)
    source.ensure_commit(commit)

    tracemalloc.start()
    try:
        source.prefetch(commit, BATCH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < MAX_FILE_BYTES  # reading the blob would have held all 12 MB
    # The others are kept; that directory's read refuses as it always did.
    assert processes(source, lambda: source.read_tree(commit, "services/s08")) == 0
    with pytest.raises(FileTooLargeError, match=r"services/s07/huge\.yaml: \d+ bytes, more than"):
        source.read_tree(commit, "services/s07")


def test_prefetch_keeps_no_more_contents_than_its_cap(git_repo, tmp_path, monkeypatch):
    padding = {f"{d}/padding.txt": f"{i:02d}".encode() * 500 for i, d in enumerate(BATCH)}
    commit = git_repo.commit({**FILES, **padding})
    source = fresh(git_repo, tmp_path)
    source.ensure_commit(commit)
    # Room for about five of the twenty directories (a little over 1 KB each).
    monkeypatch.setattr(git_module, "PREFETCH_MAX_BYTES", 5 * 1100)

    source.prefetch(commit, BATCH)

    kept = source._memo.blob_bytes
    assert 4000 < kept <= 5 * 1100
    costs = [processes(source, partial(source.read_tree, commit, d)) for d in BATCH]
    assert costs.count(0) == 5 and costs.count(1) == 15, "listed, but contents read as usual"
    assert [f.data for f in source.read_tree(commit, BATCH[-1]) if "padding" in f.path] == [
        b"19" * 500
    ]


def test_prefetched_contents_answer_only_for_their_commit(git_repo, tmp_path):
    old = git_repo.commit(FILES)
    new = git_repo.commit({"services/s00/deployment.yaml": "kind: Changed\n"})
    source = fresh(git_repo, tmp_path)
    source.ensure_commit(new)

    source.prefetch(old, BATCH)
    at_new = {f.path: f.data for f in source.read_tree(new, "services/s00")}
    at_old = {f.path: f.data for f in source.read_tree(old, "services/s00")}

    assert at_new["services/s00/deployment.yaml"] == b"kind: Changed\n"
    assert at_old["services/s00/deployment.yaml"] == b"kind: Deployment\nmetadata: {name: s0}\n"
    assert source.tree_ids(new, ["services/s00"]) != source.tree_ids(old, ["services/s00"])


def test_prefetch_of_a_commit_not_in_the_cache_fetches_it(git_repo, tmp_path):
    commit = git_repo.commit(FILES)
    source = fresh(git_repo, tmp_path)

    source.prefetch(commit, [*BATCH, "../outside", "services/missing"])

    assert processes(source, lambda: source.read_tree(commit, "services/s03")) == 0
    with pytest.raises(SourceNotFound, match="'services/missing' is not a directory"):
        source.read_tree(commit, "services/missing")


def test_a_commit_gone_from_the_cache_under_a_live_source_is_fetched_again(git_repo, tmp_path):
    commit = git_repo.commit(FILES)
    source = fresh(git_repo, tmp_path)
    source.read_tree(commit, "services/s00")
    shutil.rmtree(source.cache_dir)  # as if pruned, or another machine's disk replaced

    files = source.read_tree(commit, "services/s01")

    assert [f.path for f in files] == [
        "services/s01/config/app.json",
        "services/s01/deployment.yaml",
    ]
