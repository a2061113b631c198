"""Any Git host over smart HTTP (or ``file://``), through the ``git`` command.

The head is one ``ls-remote`` in protocol v0: a single GET of info/refs, where v2 would
need a second request. Contents come from a shallow bare cache per repository under the
workspace, fetched only when the wanted commit is not there yet, under a file lock so two
processes on one machine never fetch into one cache at once.

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
    collect_files,
    normalize_dir,
    scrub,
    too_large,
    too_much,
)

REMOTE_TIMEOUT = 60.0
FETCH_TIMEOUT = 300.0
LOCAL_TIMEOUT = 60.0
_SCHEMES = ("http", "https", "file")
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# From this many paths in one directory, tree_ids lists the directory instead.
LIST_SIBLINGS_FROM = 8
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
        self.ensure_commit(commit)
        dirs = sorted(set(wanted.values()))
        for directory in dirs:
            if "\n" in directory:
                raise SourceError(f"{directory!r}: line breaks are not allowed in a path")
        ids = self._ids_by_listing(commit, dirs)
        rest = [directory for directory in dirs if directory not in ids]
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
        self.ensure_commit(commit)
        if directory:
            entry = self._find(commit, directory)
            if entry is None or entry.mode != TREE_MODE:
                raise SourceNotFound(f"{path!r} is not a directory at commit {commit[:12]}")
        scope = ["--", directory] if directory else []
        listing = self._ls_tree(commit, "-r", *scope)
        prefix = f"{directory}/" if directory else ""
        return collect_files(
            [entry for entry in listing if entry.path.startswith(prefix)],
            read_blobs=self._read_blobs,
            find_entry=lambda target: self._find(commit, target),
        )

    def prefetch(self, commit: str, directories: Sequence[str]) -> None:
        """Nothing yet: every read asks the source."""

    def read_file(self, commit: str, path: str) -> bytes | None:
        target = normalize_dir(path)
        if not target:
            return None
        self.ensure_commit(commit)
        entry = self._find(commit, target)
        if entry is None or entry.mode in (TREE_MODE, SUBMODULE_MODE):
            return None
        (file,) = collect_files(
            [entry],
            read_blobs=self._read_blobs,
            find_entry=lambda link_target: self._find(commit, link_target),
        )
        return file.data

    def ensure_commit(self, commit: str) -> None:
        """Fetch ``commit`` into the cache unless it is already there."""
        if not _SHA.fullmatch(commit):
            raise SourceError(f"{commit!r} is not a commit id")
        if self._has_commit(commit):
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
        return self._git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0

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
        """The entry at ``path`` in ``commit`` (a link target or a directory)."""
        return next((e for e in self._ls_tree(commit, "--", path) if e.path == path), None)

    def _ls_tree(self, commit: str, *args: str) -> list[TreeEntry]:
        result = self._git("ls-tree", "-z", commit, *args)
        if result.returncode != 0:
            raise self._failure(result, "ls-tree")
        entries = []
        for item in result.stdout.split(b"\0"):
            if item:
                meta, _, path = item.decode().partition("\t")
                mode, _, sha = meta.split(" ")
                entries.append(TreeEntry(path, mode, sha))
        return entries

    def _read_blobs(self, shas: Sequence[str]) -> Mapping[str, bytes]:
        listing = "".join(f"{s}\n" for s in shas).encode()
        # Sizes first ("<id> blob <size>"), so a huge blob is refused before it is read.
        result = self._git("cat-file", "--batch-check", input=listing)
        if result.returncode != 0:
            raise self._failure(result, "cat-file")
        lines = result.stdout.decode().splitlines()
        total = 0
        for index, sha in enumerate(shas):
            fields = lines[index].split(" ") if index < len(lines) else []
            if len(fields) != 3 or fields[1] != "blob":
                raise SourceError(f"{self.label}: blob {sha} is missing from the cache")
            if int(fields[2]) > MAX_FILE_BYTES:
                raise too_large(sha, int(fields[2]))
            total += int(fields[2])
        if total > MAX_TOTAL_BYTES:
            raise too_much()
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
