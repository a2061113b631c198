"""What a Git source remembers between reads. Git objects never change, so a listing or
a blob read once at a commit stays true for as long as the source lives: a batch of
services read through one source starts git once for what they share, not once each.

Bounded, because a source may live for a whole batch: past ``MAX_ENTRIES`` listed
entries or ``MAX_BLOB_BYTES`` of contents, further ones are simply not kept (they are
read again when asked for again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from syncworker.sources.base import TreeEntry

# About 300 bytes each in memory: some 15 MB at most.
MAX_ENTRIES = 50_000
# The most of the 200 MiB a fetch worker may use that is spent on kept contents.
MAX_BLOB_BYTES = 32 * 1024 * 1024
_MAX_COMMITS = 1_000


class ObjectMemo:
    """Commits known present, listings by (commit, directory), single entries looked up
    by path, blob sizes and contents by id."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.sizes: dict[str, int] = {}
        self.blob_bytes = 0
        # (commit, directory) -> every entry at and under it (a complete listing).
        self._listed: dict[tuple[str, str], list[TreeEntry]] = {}
        # (commit, path) -> the entry there, None for nothing there.
        self._entries: dict[tuple[str, str], TreeEntry | None] = {}
        self._blobs: dict[str, bytes] = {}
        self._kept = 0

    def add_size(self, sha: str, size: int) -> None:
        if len(self.sizes) < MAX_ENTRIES:
            self.sizes[sha] = size

    def confirm(self, commit: str) -> None:
        if len(self.present) >= _MAX_COMMITS:
            self.present.clear()
        self.present.add(commit)

    def forget_contents(self) -> None:
        """Drop listings, entries and contents (a new batch), keep the known commits."""
        self._listed.clear()
        self._entries.clear()
        self._blobs.clear()
        self.sizes.clear()
        self.blob_bytes = self._kept = 0

    def add_listing(self, commit: str, directory: str, entries: Sequence[TreeEntry]) -> None:
        """Keep a complete recursive listing of ``directory`` (its own entry, those of the
        trees above it, everything under it), when it fits."""
        if self._kept + len(entries) > MAX_ENTRIES:
            return
        prefix = f"{directory}/" if directory else ""
        self._listed[(commit, directory)] = [
            e for e in entries if e.path.startswith(prefix) or e.path == directory
        ]
        for entry in entries:
            self._entries[(commit, entry.path)] = entry
        self._kept += len(entries)

    def add_entry(self, commit: str, path: str, entry: TreeEntry | None) -> None:
        if self._kept < MAX_ENTRIES:
            self._entries[(commit, path)] = entry
            self._kept += 1

    def lookup(self, commit: str, path: str) -> tuple[bool, TreeEntry | None]:
        """(known, entry): whether the memo can tell what is at ``path``, and what."""
        if not path:
            return False, None  # the root has no entry of its own
        key = (commit, path)
        if key in self._entries:
            return True, self._entries[key]
        # Inside a complete listing, what it does not name is not there.
        return self._covering(commit, path) is not None, None

    def listing(self, commit: str, directory: str) -> list[TreeEntry] | None:
        """Every entry at and under ``directory``, when a kept listing covers it."""
        covering = self._covering(commit, directory)
        if covering is None:
            return None
        entries = self._listed[(commit, covering)]
        if covering == directory:
            return entries
        prefix = f"{directory}/"
        return [e for e in entries if e.path.startswith(prefix) or e.path == directory]

    def _covering(self, commit: str, path: str) -> str | None:
        """The kept listing's directory that ``path`` lies in (itself or an ancestor)."""
        while True:
            if (commit, path) in self._listed:
                return path
            if not path:
                return None
            path = path.rpartition("/")[0]

    def blob(self, sha: str) -> bytes | None:
        return self._blobs.get(sha)

    def add_blobs(self, contents: Iterable[tuple[str, bytes]]) -> None:
        for sha, data in contents:
            if sha not in self._blobs and self.blob_bytes + len(data) <= MAX_BLOB_BYTES:
                self._blobs[sha] = data
                self.blob_bytes += len(data)
