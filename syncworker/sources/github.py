"""GitHub (and GitHub Enterprise) through its REST API.

The head is a conditional request for the branch's commit id alone: an answer of 304
costs a few hundred bytes, and no rate limit when the request carries a token (GitHub
counts an anonymous 304 like any answer). Trees and blobs are read only for what
changed; blobs come raw and streamed, so one over the size limit is dropped after the
limit, never downloaded whole. Blob contents are cached by id in-process, which is
always valid because Git objects are content-addressed.

Redirects are followed, as GitHub asks; ``requests`` drops the token when one leads to
another host or scheme, and so must anything that replaces it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from syncworker.sources.base import (
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    SUBMODULE_MODE,
    TREE_MODE,
    Head,
    SourceError,
    SourceFile,
    SourceNotFound,
    TreeEntry,
    collect_files,
    normalize_dir,
    scrub,
    too_large,
    too_much,
)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
SHA_MEDIA_TYPE = "application/vnd.github.sha"
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"
_CHUNK = 64 * 1024
# (connect, read) seconds: a poll must never hang a worker.
TIMEOUT = (5.0, 30.0)
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# GitHub asks clients that hit a secondary rate limit without a hint to wait a minute.
_DEFAULT_BACKOFF = 60.0


class BlobCache:
    """A small LRU of blob contents by id, bounded in bytes and shared by the sources of
    one process (a fetch task builds a new source each time)."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, sha: str) -> bytes | None:
        with self._lock:
            data = self._items.get(sha)
            if data is not None:
                self._items.move_to_end(sha)
            return data

    def put(self, sha: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            return  # one huge file would evict everything useful
        with self._lock:
            if sha in self._items:
                return
            self._items[sha] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


blob_cache = BlobCache()


@dataclass(frozen=True)
class _Tree:
    sha: str
    entries: list[TreeEntry]  # paths relative to this tree
    truncated: bool


class GitHubSource:
    def __init__(
        self,
        *,
        owner: str,
        name: str,
        branch: str,
        token: str = "",
        api_url: str = "",
        cache: BlobCache = blob_cache,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.owner = owner
        self.name = name
        self.label = f"{owner}/{name}"
        self.branch = branch
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._token = token
        self._cache = cache
        self._timeout = timeout
        self._trees: dict[tuple[str, bool], _Tree] = {}
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "simple-gitops",
            }
        )
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"GitHubSource({self.owner}/{self.name}@{self.branch})"

    def close(self) -> None:
        self.session.close()

    def head(self, *, etag: str = "", last_commit: str = "") -> Head:
        headers = {"Accept": SHA_MEDIA_TYPE}
        if last_commit:
            # GitHub documents the commit id itself as a valid ETag for this media type,
            # so even a first poll after a restart can be answered with a free 304.
            headers["If-None-Match"] = etag or f'"{last_commit}"'
        response = self._get(
            f"commits/{quote(self.branch, safe='/')}",
            headers=headers,
            missing=f"repository or branch {self.branch!r} not found",
        )
        new_etag = response.headers.get("ETag", "")
        if response.status_code == 304:
            return Head(commit=last_commit, changed=False, etag=new_etag or etag)
        commit = response.text.strip()
        if not _SHA.fullmatch(commit):
            raise SourceError(f"{self.label}: unexpected answer for the branch head")
        return Head(commit=commit, changed=commit != last_commit, etag=new_etag)

    def tree_ids(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        wanted = {path: normalize_dir(path) for path in paths}
        if not wanted:
            return {}
        # One request answers for every path, unless GitHub cut it short.
        tree = self._tree(commit, recursive=True)
        if tree.truncated:
            return {path: self._object_id(commit, norm) for path, norm in wanted.items()}
        ids = {e.path: e.sha for e in tree.entries if e.mode != SUBMODULE_MODE}
        ids[""] = tree.sha
        return {path: ids.get(norm) for path, norm in wanted.items()}

    def read_tree(self, commit: str, path: str) -> list[SourceFile]:
        directory = normalize_dir(path)
        tree_id = self._tree_id(commit, directory) if directory else commit
        if tree_id is None:
            raise SourceNotFound(f"{path!r} is not a directory at commit {commit[:12]}")
        prefix = f"{directory}/" if directory else ""
        entries = [TreeEntry(prefix + e.path, e.mode, e.sha) for e in self._all_entries(tree_id)]
        return collect_files(
            entries,
            read_blobs=self._read_blobs,
            find_entry=lambda target: self._find(commit, target),
        )

    def read_file(self, commit: str, path: str) -> bytes | None:
        target = normalize_dir(path)
        entry = self._find(commit, target) if target else None
        if entry is None or entry.mode in (TREE_MODE, SUBMODULE_MODE):
            return None
        (file,) = collect_files(
            [entry],
            read_blobs=self._read_blobs,
            find_entry=lambda link_target: self._find(commit, link_target),
        )
        return file.data

    def prefetch(self, commit: str, directories: Sequence[str]) -> None:
        """Nothing: the REST API reads blobs one request each whatever is asked together,
        and the one recursive tree that lists sibling directories at once is their
        parent's, the whole monorepo at scale (cut short past 100,000 entries). Listings
        and blobs are kept per source and per process already."""

    def _all_entries(self, tree_id: str) -> list[TreeEntry]:
        tree = self._tree(tree_id, recursive=True)
        if not tree.truncated:
            return tree.entries
        # Too big for one answer: list it one level at a time instead.
        entries: list[TreeEntry] = []
        pending = [("", tree_id)]
        while pending:
            prefix, sha = pending.pop()
            for entry in self._tree(sha, recursive=False).entries:
                entries.append(TreeEntry(prefix + entry.path, entry.mode, entry.sha))
                if entry.mode == TREE_MODE:
                    pending.append((f"{prefix}{entry.path}/", entry.sha))
        return entries

    def _tree_id(self, commit: str, directory: str) -> str | None:
        if not directory:
            return self._tree(commit, recursive=False).sha
        entry = self._find(commit, directory)
        return entry.sha if entry is not None and entry.mode == TREE_MODE else None

    def _object_id(self, commit: str, path: str) -> str | None:
        if not path:
            return self._tree(commit, recursive=False).sha
        entry = self._find(commit, path)
        return entry.sha if entry is not None and entry.mode != SUBMODULE_MODE else None

    def _find(self, commit: str, path: str) -> TreeEntry | None:
        """The entry at ``path``, walking down from the commit's root tree."""
        tree = self._tree(commit, recursive=False)
        parts = path.split("/")
        for depth, part in enumerate(parts):
            entry = next((e for e in tree.entries if e.path == part), None)
            if entry is None:
                return None
            if depth == len(parts) - 1:
                return TreeEntry(path, entry.mode, entry.sha)
            if entry.mode != TREE_MODE:
                return None
            tree = self._tree(entry.sha, recursive=False)
        return None

    def _tree(self, sha: str, *, recursive: bool) -> _Tree:
        # Listings are immutable for a commit or tree id: ask each one once per source.
        key = (sha, recursive)
        if key not in self._trees:
            params = {"recursive": "1"} if recursive else None
            response = self._get(f"git/trees/{sha}", params=params, missing=f"tree {sha} not found")
            data = response.json()
            entries = [TreeEntry(item["path"], item["mode"], item["sha"]) for item in data["tree"]]
            self._trees[key] = _Tree(data["sha"], entries, bool(data.get("truncated")))
        return self._trees[key]

    def _read_blobs(self, shas: Sequence[str]) -> Mapping[str, bytes]:
        contents: dict[str, bytes] = {}
        total = 0
        for sha in shas:
            data = self._cache.get(sha)
            if data is None:
                data = self._download_blob(sha)
                self._cache.put(sha, data)
            contents[sha] = data
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise too_much()
        return contents

    def _download_blob(self, sha: str) -> bytes:
        """The raw bytes of one blob, read no further than MAX_FILE_BYTES + 1."""
        response = self._get(
            f"git/blobs/{sha}",
            headers={"Accept": RAW_MEDIA_TYPE},
            missing=f"blob {sha} not found",
            stream=True,
        )
        with response:
            declared = response.headers.get("Content-Length", "")
            # A compressed length says nothing sure about the size of the content.
            encoded = response.headers.get("Content-Encoding")
            if declared.isdigit() and int(declared) > MAX_FILE_BYTES and not encoded:
                raise too_large(sha, int(declared))
            data = bytearray()
            try:
                for chunk in response.iter_content(_CHUNK):
                    data += chunk
                    if len(data) > MAX_FILE_BYTES:
                        raise too_large(sha, None)
            except requests.RequestException as exc:
                raise self._unreachable(exc) from None
        return bytes(data)

    def _get(
        self,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        missing: str,
        stream: bool = False,
    ) -> requests.Response:
        if not self.owner or not self.name:
            # Reported by the first call, so the caller records it like any other failure.
            raise SourceError(f"{self.label}: a GitHub repository needs an owner and a name")
        url = f"{self.api_url}/repos/{quote(self.owner)}/{quote(self.name)}/{endpoint}"
        try:
            response = self.session.get(
                url, headers=headers, params=params, timeout=self._timeout, stream=stream
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        if response.status_code in (200, 304):
            return response
        error = self._error(response, missing)
        response.close()
        raise error

    def _unreachable(self, exc: requests.RequestException) -> SourceError:
        # A read that stalls mid-answer is a ConnectionError wrapping a read timeout.
        if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
            return SourceError(f"{self.label}: GitHub did not answer in time", transient=True)
        message = scrub(f"{self.label}: cannot reach {self.api_url}: {exc}", [self._token])
        return SourceError(message, transient=True)

    def _error(self, response: requests.Response, missing: str) -> SourceError:
        status = response.status_code
        reason = scrub(_message(response), [self._token])
        if status == 401:
            return SourceError(f"{self.label}: authentication failed (check the token)")
        if status in (403, 429):
            retry_after = _retry_after(response)
            if retry_after is not None or status == 429 or "rate limit" in reason.lower():
                return SourceError(
                    f"{self.label}: GitHub rate limit: {reason or status}",
                    transient=True,
                    retry_after=retry_after if retry_after is not None else _DEFAULT_BACKOFF,
                )
            return SourceError(f"{self.label}: access denied: {reason or status}")
        if status in (404, 422):
            # GitHub answers 404 for a private repository the token cannot see, too.
            return SourceError(f"{self.label}: {missing}")
        if status == 409:
            return SourceError(f"{self.label}: {reason or 'repository is empty'}")
        if status >= 500:
            return SourceError(f"{self.label}: GitHub answered {status}", transient=True)
        return SourceError(f"{self.label}: unexpected answer {status}: {reason}")


def _message(response: requests.Response) -> str:
    try:
        data: Any = response.json()
    except ValueError:
        return ""
    return str(data.get("message", "")) if isinstance(data, dict) else ""


def _retry_after(response: requests.Response) -> float | None:
    """The wait GitHub asks for: Retry-After first, then the primary limit's reset."""
    header = response.headers.get("Retry-After", "")
    if header.isdigit():
        return float(header)
    if response.headers.get("X-RateLimit-Remaining") == "0":
        reset = response.headers.get("X-RateLimit-Reset", "")
        if reset.isdigit():
            return max(1.0, int(reset) - time.time())
        return _DEFAULT_BACKOFF
    return None
