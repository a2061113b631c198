"""What the pipeline needs from a Git host, whatever the host.

A Source answers four questions about one repository: where is the branch now (cheaply,
and "unchanged" when it has not moved), what is the object id of each path a service's
build read at a commit (to tell which services changed), what files are under one
directory at a commit, and what one file holds (to render them).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from syncworker import rules


class SourceError(Exception):
    """A failure talking to the Git host. ``transient`` errors are retried with backoff;
    ``retry_after`` (seconds) is the host's own hint when it gave one. Messages never
    contain a credential."""

    def __init__(
        self, message: str, *, transient: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class UnsafePathError(SourceError):
    """A path or symlink in the repository points outside it."""


class FileTooLargeError(SourceError):
    """A file (or all files together) over the size limits. Raised before more than the
    limit is read, so a huge blob is never downloaded or held in memory whole. ``sha``
    names the blob when a source raises it; ``collect_files`` names the file instead."""

    def __init__(self, message: str, *, sha: str = "") -> None:
        super().__init__(message)
        self.sha = sha


# Large enough for upstream install bundles (Argo CD's install.yaml is ~1.5 MB).
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024


class SourceNotFound(SourceError):
    """The path asked for is no directory of the repository at that commit (a missing
    kustomize base, a service directory that was removed). Never transient."""


@dataclass(frozen=True)
class Head:
    """Where the watched branch is. ``changed`` is False when the host said "not modified"
    (then ``commit`` is the last known one); ``etag`` is kept for the next conditional
    request."""

    commit: str
    changed: bool
    etag: str = ""


@dataclass(frozen=True)
class SourceFile:
    """A regular file at a commit. ``path`` is relative to the repository root (POSIX);
    symlinks are already resolved to the content of their target inside the repository."""

    path: str
    data: bytes


class Source(Protocol):
    def head(self, *, etag: str = "", last_commit: str = "") -> Head:
        """The branch head. May answer ``changed=False`` (one cheap request) when the host
        supports conditional requests and nothing moved since ``etag``/``last_commit``."""
        ...

    def tree_ids(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        """The Git object id of each path at ``commit``: a directory's tree id, a file's
        blob id, None when nothing is there. One request answers for all paths."""
        ...

    def read_tree(self, commit: str, path: str) -> list[SourceFile]:
        """Every regular file under ``path`` (recursive) at ``commit``, sorted by path.
        Raises SourceNotFound when ``path`` is no directory at ``commit``."""
        ...

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The content of the file at ``path`` at ``commit`` (a symlink followed inside
        the repository); None when there is no file there."""
        ...

    def prefetch(self, commit: str, directories: Sequence[str]) -> None:
        """A hint: ``directories`` of ``commit`` are about to be read (a batch of
        services), so read them together now if the host makes that cheaper. Reads answer
        the same either way; a source with nothing cheaper does nothing."""


def normalize_dir(path: str) -> str:
    """A repository-relative directory in canonical form (``""`` for the root), by the
    one path rule of ``syncworker.rules``: nothing outside the repository is ever read."""
    try:
        return rules.repo_path(path)
    except rules.RuleError as exc:
        raise UnsafePathError(str(exc)) from None


def resolve_symlink(link_path: str, target: str) -> str:
    """The repository-relative path a symlink at ``link_path`` points to, or
    UnsafePathError when the target is absolute or leaves the repository."""
    if target.startswith("/"):
        raise UnsafePathError(f"{link_path}: symlink to absolute path {target!r}")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    if joined == ".." or joined.startswith("../"):
        raise UnsafePathError(f"{link_path}: symlink {target!r} leaves the repository")
    return joined


SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
TREE_MODE = "040000"
# Chains of links are followed, but not forever (a link cycle would never end).
MAX_SYMLINK_HOPS = 8

_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a Git tree listing: repository-relative path, mode, object id."""

    path: str
    mode: str
    sha: str


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets`` nor credentials embedded in URLs, for messages
    that reach logs, the database and the admin."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _URL_USERINFO.sub("***@", text)


def collect_files(
    entries: Iterable[TreeEntry],
    *,
    read_blobs: Callable[[Sequence[str]], Mapping[str, bytes]],
    find_entry: Callable[[str], TreeEntry | None],
) -> list[SourceFile]:
    """The files a directory listing stands for, sorted by path: regular files as they
    are, symlinks replaced by the content of their target (which may lie outside the
    listing, never outside the repository), submodules skipped.

    ``read_blobs`` returns the content of many blobs at once; ``find_entry`` looks up one
    path of the same commit, for link targets the listing does not contain.
    """
    listed = {entry.path: entry for entry in entries}
    blob_of: dict[str, str] = {}
    links: list[TreeEntry] = []
    for entry in listed.values():
        if entry.mode == SYMLINK_MODE:
            links.append(entry)
        elif entry.mode not in (SUBMODULE_MODE, TREE_MODE):
            blob_of[entry.path] = entry.sha
    try:
        for link in links:
            blob_of[link.path] = _follow(link, listed, read_blobs, find_entry)
        contents = read_blobs(sorted(set(blob_of.values())))
    except FileTooLargeError as exc:
        if not exc.sha:
            raise
        path = min(
            [p for p, sha in blob_of.items() if sha == exc.sha]
            + [e.path for e in listed.values() if e.sha == exc.sha]
            or [exc.sha]
        )
        raise FileTooLargeError(f"{path}: {exc}") from None
    return [SourceFile(path, contents[sha]) for path, sha in sorted(blob_of.items())]


def too_large(sha: str, size: int | None) -> FileTooLargeError:
    """The error for one blob over MAX_FILE_BYTES (``size`` None: the host did not say)."""
    told = f"{size} bytes, more" if size is not None else "more"
    return FileTooLargeError(f"{told} than the limit of {MAX_FILE_BYTES}", sha=sha)


def too_much() -> FileTooLargeError:
    """The error for files over MAX_TOTAL_BYTES together."""
    return FileTooLargeError(
        f"more than {MAX_TOTAL_BYTES} bytes to render, the limit for all files together"
    )


def _follow(
    link: TreeEntry,
    listed: Mapping[str, TreeEntry],
    read_blobs: Callable[[Sequence[str]], Mapping[str, bytes]],
    find_entry: Callable[[str], TreeEntry | None],
) -> str:
    """The blob id a symlink finally points to."""
    entry = link
    for _ in range(MAX_SYMLINK_HOPS):
        raw = read_blobs([entry.sha])[entry.sha]
        try:
            target = resolve_symlink(entry.path, raw.decode())
        except UnicodeDecodeError:
            raise SourceError(f"{link.path}: symlink target is not UTF-8") from None
        except UnsafePathError as exc:
            if entry is link:
                raise
            raise UnsafePathError(f"{link.path}: {exc}") from None
        found = listed.get(target) or find_entry(target)
        if found is None:
            raise SourceError(f"{link.path}: symlink target {target!r} does not exist")
        if found.mode == SYMLINK_MODE:
            entry = found
            continue
        if found.mode in (TREE_MODE, SUBMODULE_MODE):
            raise SourceError(
                f"{link.path}: symlink to directory {target!r} (only links to files are read)"
            )
        return found.sha
    raise SourceError(f"{link.path}: too many levels of symbolic links")
