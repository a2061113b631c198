"""Any Git host over smart HTTP (or ``file://``), through the ``git`` command.

The head is one ``ls-remote`` in protocol v0: a single GET of info/refs, where v2 would
need a second request. Contents come from a shallow bare cache per repository under the
workspace, fetched only when the wanted commit is not there yet, under a file lock so two
processes on one machine never fetch into one cache at once.

Starting git is most of what a read costs, so a read starts as few processes as it can:
a directory is one ``ls-tree -r -t -l`` (its own entry, everything under it, and blob
sizes for the limits) and one ``cat-file --batch``, and what was listed or read is kept
on the source (``memo.ObjectMemo``). ``prefetch`` reads many directories of one commit
in two processes in all, for a batch of services rendered together.

A token travels as an HTTP header through ``GIT_CONFIG_*`` environment variables: never
in the URL, on the command line or in a config file, and never in a message.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

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
    UnsafePathError,
    collect_files,
    normalize_dir,
    scrub,
    too_large,
    too_much,
)
from syncworker.sources.memo import MAX_BLOB_BYTES, ObjectMemo

REMOTE_TIMEOUT = 60.0
FETCH_TIMEOUT = 300.0
LOCAL_TIMEOUT = 60.0
_SCHEMES = ("http", "https", "file")
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# From this many paths in one directory, tree_ids lists the directory instead.
LIST_SIBLINGS_FROM = 8
# The most one prefetch holds in contents: directories past it are read as usual.
PREFETCH_MAX_BYTES = MAX_BLOB_BYTES
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_BAD_BRANCH = re.compile(r"^-|\.\.|//|@\{|[\x00-\x20\x7f~^:?*\[\\]|^/|/$|\.lock$|\.$")
_FETCHED_REF = "refs/gitops/head"
# Environment passed through to git: proxies and CA bundles of the worker's image.
_PASSED_ENV = (
    "PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
_AUTH_ERRORS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "returned error: 401",
    "returned error: 403",
)
_TRANSIENT_ERRORS = (
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "couldn't connect",
    "connection reset",
    "timed out",
    "returned error: 5",
    "returned error: 429",
    "rpc failed",
    "early eof",
    "unexpected disconnect",
    "remote end hung up",
    "temporary failure",
)
_MISSING_ERRORS = ("not found", "does not appear to be a git repository", "returned error: 404")


class GitSource:
    def __init__(
        self,
        url: str,
        *,
        branch: str,
        workspace: Path,
        token: str = "",
        key: str = "",
    ) -> None:
        parts = urlsplit(url)
        self.label = scrub(url, [token])
        # Reported by the first call rather than here, so the caller records it like any
        # other failure of the repository.
        self._problem = ""
        if parts.scheme not in _SCHEMES:
            self._problem = f"{self.label}: only http(s):// and file:// URLs are supported"
        elif _BAD_BRANCH.search(branch) or not branch:
            self._problem = f"{self.label}: {branch!r} is not a valid branch name"
        self.url = url
        self.branch = branch
        root = workspace / "git"
        name = key if _SAFE_KEY.fullmatch(key) else hashlib.sha256(url.encode()).hexdigest()[:16]
        self.cache_dir = root / f"{name}.git"
        self.lock_path = root / f"{name}.lock"
        self._home = root / "home"
        self._env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
        self._env.update(
            {
                "HOME": str(self._home),
                "LC_ALL": "C",
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_ALLOW_PROTOCOL": ":".join(_SCHEMES),
                "GIT_LITERAL_PATHSPECS": "1",
                # A stalled transfer fails after 30 s below 1 KB/s, before the hard timeout.
                "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
                "GIT_HTTP_LOW_SPEED_TIME": "30",
            }
        )
        self._secrets = [token]
        self._memo = ObjectMemo()
        # Git processes started, for the benchmarks and the tests that count them.
        self.processes = 0
        if token and parts.scheme != "file":
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            self._secrets.append(basic)
            # Scoped to the repository's origin: a redirect elsewhere never sees it.
            origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"
            self._env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )

    def __repr__(self) -> str:
        return f"GitSource({self.label}@{self.branch})"

    def head(self, *, etag: str = "", last_commit: str = "") -> Head:
        # ls-remote has no conditional form: the commit id itself is the validator, kept
        # as the ETag so that either tells whether the branch moved.
        self._init_cache()
        ref = f"refs/heads/{self.branch}"
        result = self._git(
            "-c", "protocol.version=0", "ls-remote", self.url, ref, timeout=REMOTE_TIMEOUT
        )
        if result.returncode != 0:
            raise self._failure(result, "ls-remote")
        for line in result.stdout.decode().splitlines():
            commit, _, name = line.partition("\t")
            if name == ref and _SHA.fullmatch(commit):
                return Head(commit=commit, changed=commit != (last_commit or etag), etag=commit)
        raise SourceError(f"{self.label}: branch {self.branch!r} not found")

    def tree_ids(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        wanted = {path: normalize_dir(path) for path in paths}
        if not wanted:
            return {}
        dirs = sorted(set(wanted.values()))
        for directory in dirs:
            if "\n" in directory:
                raise SourceError(f"{directory!r}: line breaks are not allowed in a path")
        ids: dict[str, str | None] = {}
        for directory in dirs:
            known, entry = self._memo.lookup(commit, directory)
            if known:
                ids[directory] = _object_id(entry)
        unknown = [directory for directory in dirs if directory not in ids]
        if not unknown:
            return {path: ids[norm] for path, norm in wanted.items()}
        self.ensure_commit(commit)
        ids.update(self._ids_by_listing(commit, unknown))
        rest = [directory for directory in unknown if directory not in ids]
        if rest:
            # One process answers for the other paths: "<id> tree|blob <size>" or
            # "<spec> missing".
            specs = "".join(f"{commit}:{directory}\n" for directory in rest)
            result = self._git("cat-file", "--batch-check", input=specs.encode())
            if result.returncode != 0:
                raise self._failure(result, "cat-file")
            for directory, line in zip(rest, result.stdout.decode().splitlines(), strict=True):
                fields = line.split(" ")
                found = (
                    len(fields) == 3 and fields[1] in ("tree", "blob") and _SHA.fullmatch(fields[0])
                )
                ids[directory] = fields[0] if found else None
        return {path: ids.get(norm) for path, norm in wanted.items()}

    def _ids_by_listing(self, commit: str, paths: Sequence[str]) -> dict[str, str | None]:
        """The ids of paths that share their directory with many others, from one listing
        of that directory each. ``cat-file`` resolves every path from the root and reads
        the parent tree again each time: 10,000 services in one directory took minutes."""
        siblings: dict[str, list[str]] = {}
        for path in paths:
            if path:
                siblings.setdefault(path.rpartition("/")[0], []).append(path)
        ids: dict[str, str | None] = {}
        for parent, children in sorted(siblings.items()):
            if len(children) < LIST_SIBLINGS_FROM:
                continue
            listed = {
                entry.path: entry.sha
                for entry in self._ls_tree(commit, *(["--", f"{parent}/"] if parent else []))
                if entry.mode != SUBMODULE_MODE
            }
            ids.update((child, listed.get(child)) for child in children)
        return ids

    def read_tree(self, commit: str, path: str) -> list[SourceFile]:
        directory = normalize_dir(path)
        listing = self._memo.listing(commit, directory)
        if listing is None:
            # Recursive, with the trees (the directory's own entry says whether it is one)
            # and blob sizes (the limits are checked before any content is read).
            listing = self._ls_tree(commit, "-r", "-t", *(["--", directory] if directory else []))
            self._memo.add_listing(commit, directory, listing)
        if directory:
            own = next((e for e in listing if e.path == directory), None)
            if own is None or own.mode != TREE_MODE:
                raise SourceNotFound(f"{path!r} is not a directory at commit {commit[:12]}")
        prefix = f"{directory}/" if directory else ""
        return collect_files(
            [entry for entry in listing if entry.path.startswith(prefix)],
            read_blobs=self._read_blobs,
            find_entry=lambda target: self._find(commit, target),
        )

    def read_file(self, commit: str, path: str) -> bytes | None:
        target = normalize_dir(path)
        if not target:
            return None
        entry = self._find(commit, target)
        if entry is None or entry.mode in (TREE_MODE, SUBMODULE_MODE):
            return None
        (file,) = collect_files(
            [entry],
            read_blobs=self._read_blobs,
            find_entry=lambda link_target: self._find(commit, link_target),
        )
        return file.data

    def prefetch(self, commit: str, directories: Sequence[str]) -> None:
        """Read many directories of ``commit`` at once: one listing and one ``cat-file``
        for all, kept on this source so that ``read_tree``, ``read_file`` and
        ``tree_ids`` under them start no process. Replaces what an earlier prefetch
        kept. A directory whose files break a read's limits (one over MAX_FILE_BYTES,
        all over MAX_TOTAL_BYTES) or that would take the contents of this prefetch past
        PREFETCH_MAX_BYTES keeps its listing only: its read then reads (or refuses) as
        usual. Invalid, missing and non-directory paths are left for the read to report;
        only a commit that cannot be had raises, as every read of it would."""
        dirs: list[str] = []
        for path in directories:
            try:
                directory = normalize_dir(path)
            except UnsafePathError:
                continue
            if directory not in dirs:
                dirs.append(directory)
        if not dirs:
            return
        self._memo.forget_contents()
        listing = self._ls_tree(commit, "-r", "-t", *([] if "" in dirs else ["--", *dirs]))
        under: dict[str, list[TreeEntry]] = {directory: [] for directory in dirs}
        for entry in listing:
            # Every directory asked for that the entry lies in (or is): its ancestors.
            path = entry.path
            while True:
                if path in under:
                    under[path].append(entry)
                if not path:
                    break
                path = path.rpartition("/")[0]
        wanted: dict[str, int] = {}
        wanted_bytes = 0
        for directory in dirs:
            self._memo.add_listing(commit, directory, under[directory])
            sizes = {
                e.sha: self._memo.sizes.get(e.sha, MAX_FILE_BYTES + 1)
                for e in under[directory]
                if e.mode not in (TREE_MODE, SUBMODULE_MODE)
            }
            if max(sizes.values(), default=0) > MAX_FILE_BYTES:
                continue
            if sum(sizes.values()) > MAX_TOTAL_BYTES:
                continue
            new = {sha: size for sha, size in sizes.items() if sha not in wanted}
            if wanted_bytes + sum(new.values()) <= PREFETCH_MAX_BYTES:
                wanted.update(new)
                wanted_bytes += sum(new.values())
        if wanted:
            self._memo.add_blobs(self._cat_blobs(list(wanted)).items())

    def ensure_commit(self, commit: str) -> None:
        """Fetch ``commit`` into the cache unless it is already there."""
        if not _SHA.fullmatch(commit):
            raise SourceError(f"{commit!r} is not a commit id")
        if commit in self._memo.present or self._has_commit(commit):
            return
        with self._locked():
            # Another process may have fetched it while we waited for the lock.
            if not self._has_commit(commit):
                self._fetch(commit)

    def _fetch(self, commit: str) -> None:
        fetch = ["-c", "gc.autoDetach=false", "fetch", "--quiet", "--no-tags"]
        fetch += ["--no-write-fetch-head", "--depth", "1", self.url]
        result = self._git(*fetch, f"+{commit}:{_FETCHED_REF}", timeout=FETCH_TIMEOUT)
        if result.returncode == 0 and self._has_commit(commit):
            return
        if result.returncode != 0 and _kind(result) != "other":
            raise self._failure(result, "fetch")
        # The server refuses a commit id it does not advertise: take the branch instead.
        branch = f"+refs/heads/{self.branch}:{_FETCHED_REF}"
        result = self._git(*fetch, branch, timeout=FETCH_TIMEOUT)
        if result.returncode != 0:
            raise self._failure(result, "fetch")
        if not self._has_commit(commit):
            raise SourceError(
                f"{self.label}: commit {commit[:12]} cannot be fetched (the server refuses "
                f"a commit by id and branch {self.branch!r} has moved on)"
            )

    def _has_commit(self, commit: str) -> bool:
        self._init_cache()
        if self._git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            return False
        self._memo.confirm(commit)
        return True

    def _init_cache(self) -> None:
        if self._problem:
            raise SourceError(self._problem)
        if (self.cache_dir / "HEAD").exists():
            return
        self._home.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if (self.cache_dir / "HEAD").exists():
                return
            # Built aside and renamed, so a crash never leaves a half-made cache behind.
            building = self.cache_dir.with_name(f"{self.cache_dir.name}.{os.getpid()}.tmp")
            result = self._run(
                ["init", "--quiet", "--bare", "--template=", str(building)], LOCAL_TIMEOUT
            )
            if result.returncode != 0:
                raise self._failure(result, "init")
            building.rename(self.cache_dir)

    def _find(self, commit: str, path: str) -> TreeEntry | None:
        """The entry at ``path`` in ``commit`` (a link target or a file)."""
        known, entry = self._memo.lookup(commit, path)
        if not known:
            entry = next((e for e in self._ls_tree(commit, "--", path) if e.path == path), None)
            self._memo.add_entry(commit, path, entry)
        return entry

    def _ls_tree(self, commit: str, *args: str) -> list[TreeEntry]:
        """``ls-tree -z -l`` of ``commit``, fetched first when the cache lacks it: the
        listing itself tells, so a commit already there costs no process to check."""
        if commit not in self._memo.present:
            if not _SHA.fullmatch(commit):
                raise SourceError(f"{commit!r} is not a commit id")
            self._init_cache()
        command = ("ls-tree", "-z", "-l", f"{commit}^{{commit}}", *args)
        result = self._git(*command)
        if result.returncode != 0:
            # Not there (or no longer: a cache may be pruned under a long-lived source).
            self._memo.present.discard(commit)
            self.ensure_commit(commit)
            result = self._git(*command)
        if result.returncode != 0:
            raise self._failure(result, "ls-tree")
        self._memo.confirm(commit)
        entries = []
        for item in result.stdout.split(b"\0"):
            if item:
                meta, _, path = item.decode().partition("\t")
                # "<mode> <type> <id> <size>", the size padded, "-" for trees and submodules.
                mode, _, sha, size = meta.split()
                if size.isdigit():
                    self._memo.add_size(sha, int(size))
                entries.append(TreeEntry(path, mode, sha))
        return entries

    def _read_blobs(self, shas: Sequence[str]) -> Mapping[str, bytes]:
        sizes = {sha: self._memo.sizes[sha] for sha in shas if sha in self._memo.sizes}
        unsized = [sha for sha in shas if sha not in sizes]
        if unsized:
            sizes.update(self._check_sizes(unsized))
        # Every size is known before any content is read, so a huge blob is never read.
        total = 0
        for sha in shas:
            size = sizes[sha]
            if size > MAX_FILE_BYTES:
                raise too_large(sha, size)
            total += size
        if total > MAX_TOTAL_BYTES:
            raise too_much()
        contents = {sha: data for sha in shas if (data := self._memo.blob(sha)) is not None}
        unread = [sha for sha in shas if sha not in contents]
        if unread:
            read = self._cat_blobs(unread)
            self._memo.add_blobs(read.items())
            contents.update(read)
        return contents

    def _check_sizes(self, shas: Sequence[str]) -> dict[str, int]:
        """The sizes of blobs no listing told ("<id> blob <size>" each)."""
        listing = "".join(f"{s}\n" for s in shas).encode()
        result = self._git("cat-file", "--batch-check", input=listing)
        if result.returncode != 0:
            raise self._failure(result, "cat-file")
        lines = result.stdout.decode().splitlines()
        sizes: dict[str, int] = {}
        for index, sha in enumerate(shas):
            fields = lines[index].split(" ") if index < len(lines) else []
            if len(fields) != 3 or fields[1] != "blob":
                raise SourceError(f"{self.label}: blob {sha} is missing from the cache")
            sizes[sha] = int(fields[2])
            self._memo.add_size(sha, sizes[sha])
        return sizes

    def _cat_blobs(self, shas: Sequence[str]) -> dict[str, bytes]:
        listing = "".join(f"{s}\n" for s in shas).encode()
        # One process for all blobs: "<id> blob <size>\n<content>\n" for each.
        result = self._git("cat-file", "--batch", input=listing)
        if result.returncode != 0:
            raise self._failure(result, "cat-file")
        contents: dict[str, bytes] = {}
        out, pos = result.stdout, 0
        for sha in shas:
            end = out.index(b"\n", pos)
            fields = out[pos:end].decode().split(" ")
            if len(fields) != 3 or fields[1] != "blob":
                raise SourceError(f"{self.label}: blob {sha} is missing from the cache")
            size = int(fields[2])
            contents[sha] = out[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
        return contents

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + FETCH_TIMEOUT + LOCAL_TIMEOUT
        with open(self.lock_path, "a") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SourceError(
                            f"{self.label}: the Git cache stayed locked", transient=True
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _git(
        self, *args: str, timeout: float = LOCAL_TIMEOUT, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return self._run([f"--git-dir={self.cache_dir}", *args], timeout, input)

    def _run(
        self, args: list[str], timeout: float, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        command = ["git", *args]
        self.processes += 1
        # A session of its own, so a timeout also ends git-remote-http under it.
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            verb = next(a for a in args if not a.startswith("-") and "=" not in a)
            raise SourceError(
                f"{self.label}: git {verb} timed out after {timeout:.0f}s", transient=True
            ) from None
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def _failure(self, result: subprocess.CompletedProcess[bytes], what: str) -> SourceError:
        kind = _kind(result)
        text = scrub(result.stderr.decode(errors="replace"), self._secrets)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = lines[-1].removeprefix("fatal: ") if lines else f"exit {result.returncode}"
        if kind == "auth":
            return SourceError(f"{self.label}: authentication failed ({detail})")
        if kind == "transient":
            return SourceError(f"{self.label}: git {what}: {detail}", transient=True)
        if kind == "missing":
            return SourceError(f"{self.label}: repository not found ({detail})")
        return SourceError(f"{self.label}: git {what} failed: {detail}")


def _object_id(entry: TreeEntry | None) -> str | None:
    """What ``tree_ids`` answers for an entry: no id for a submodule (not in this
    repository) nor for nothing."""
    return entry.sha if entry is not None and entry.mode != SUBMODULE_MODE else None


def _kind(result: subprocess.CompletedProcess[bytes]) -> str:
    """auth, transient, missing or other, from what git printed (LC_ALL=C)."""
    text = result.stderr.decode(errors="replace").lower()
    for kind, markers in (
        ("auth", _AUTH_ERRORS),
        ("transient", _TRANSIENT_ERRORS),
        ("missing", _MISSING_ERRORS),
    ):
        if any(marker in text for marker in markers):
            return kind
    return "other"
