"""A stand-in for the GitHub REST API, for tests only.

github.com cannot be reached from the test bed (no test may send traffic off the
machine), so this local server answers the few endpoints the GitHub source uses the way
GitHub documents them, from REAL bare Git repositories on disk (``git`` plumbing answers
every question; tests push commits with ``tests.support.gitserver.WorkingCopy``):

- ``GET /repos/{owner}/{repo}/commits/{ref}``: with ``Accept: application/vnd.github.sha``
  the body is the bare commit id, and the commit id itself, quoted, is also accepted in
  ``If-None-Match`` ("use the local SHA-1 as the ETag"); otherwise a small JSON commit.
  An unknown ref is 422 "No commit found for SHA", an empty repository 409.
- ``GET /repos/{owner}/{repo}/git/trees/{sha}[?recursive=1]``: any value of
  ``recursive`` recurses, as documented; a commit id or ref names its root tree.
- ``GET /repos/{owner}/{repo}/git/blobs/{sha}``: base64 content in lines of 60, or the
  raw bytes with ``Accept: application/vnd.github.raw+json``.

Conditional requests and rate limits, as "Rate limits for the REST API" and "Best
practices for using the REST API" document them:

- Every 200 carries a weak ETag of its body *and of who asked* (GitHub's answers vary on
  ``Authorization``, so an ETag got with one token does not match for another) and
  ``If-None-Match`` answers 304. A 304 is free only for an authorized request; an
  anonymous 304 counts like any other answer.
- The primary limit is 60 requests an hour for anonymous requests (per client, here: one
  window for all of them) and 5,000 for each token, in fixed windows: ``X-RateLimit-Reset``
  is the window's end and stays put until then. At zero every request is refused with
  ``primary_limit_status`` (403 or 429; GitHub documents both) and
  ``X-RateLimit-Remaining: 0``; ``rate_limited`` uses the window up at once, resetting
  in ``rate_limit_reset_in`` seconds.
- ``secondary_limit = (status, retry_after)`` answers 403 or 429 with the documented
  "secondary rate limit" message, with ``Retry-After`` or (``None``) without it.

With ``token`` set the repositories are private: no token is 404, another token 401 "Bad
credentials"; without it any token is a user of its own. Faults on demand:
``server_error`` (a 5xx status for every answer), ``stall_seconds`` (an answer held back
that long, or with ``stall_after_bytes`` cut off after that many bytes and then held),
``redirect = (301 | 302 | 307, host)`` (every request addressed to 127.0.0.1 is sent on
to the same path on ``host``, e.g. ``localhost``: another host to a client),
``chunked_blobs`` (raw blobs sent chunked, without ``Content-Length``) and
``force_truncated`` (recursive trees cut short with ``truncated: true``). Every request
is recorded with the host it was addressed to, whether it carried a token, and its
bytes on the wire (request line and headers in, status line, headers and body out).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.httpserver import LoopbackHandler, LoopbackServer, RequestRecord

SHA_MEDIA_TYPE = "application/vnd.github.sha"
RAW_MEDIA_TYPE = "application/vnd.github.raw"
ANONYMOUS_LIMIT = 60
AUTHENTICATED_LIMIT = 5000
WINDOW_SECONDS = 3600
DOCS = "https://docs.github.com/rest"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SAFE_REF = re.compile(r"[A-Za-z0-9._/-]+")


@dataclass
class GitHubRequest(RequestRecord):
    """One request: what GitServer records, plus the host it was addressed to (the
    ``Host`` header's name) and whether it carried an ``Authorization`` header."""

    host: str = ""
    authorized: bool = False


@dataclass
class RateWindow:
    """One identity's primary rate limit: ``used`` of ``limit`` until ``reset`` (epoch
    seconds), fixed for the window."""

    limit: int
    reset: int
    used: int = 0
    forced: bool = False  # used up by the rate_limited switch; ends only with reset()

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class FakeGitHub(LoopbackServer[GitHubRequest]):
    def __init__(self, *, token: str = "") -> None:
        super().__init__(prefix="gitops-fakegithub-")
        self.windows: dict[str, RateWindow] = {}
        self._wake = threading.Event()
        self._switches_off()
        self.token = token

    def _switches_off(self) -> None:
        self.token = ""
        self.anonymous_limit = ANONYMOUS_LIMIT
        self.authenticated_limit = AUTHENTICATED_LIMIT
        self.rate_limited = False
        self.rate_limit_reset_in = 120
        self.primary_limit_status = 403
        self.secondary_limit: tuple[int, int | None] | None = None
        self.server_error: int | None = None
        self.stall_seconds = 0.0
        self.stall_after_bytes: int | None = None
        self.redirect: tuple[int, str] | None = None
        self.chunked_blobs = False
        self.force_truncated = False

    @property
    def api_url(self) -> str:
        return self.base_url

    def create_repo(self, owner: str, name: str, *, branch: str = "main") -> Path:
        """An empty bare repository served as ``owner/name``; push to the returned path."""
        path = self.repo_path(owner, name)
        subprocess.run(
            ["git", "init", "-q", "--bare", f"--initial-branch={branch}", str(path)], check=True
        )
        return path

    def repo_path(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    def reset(self) -> None:
        """Switches off, counters cleared, every rate limit window new; stalled answers
        are let go."""
        with self._lock:
            self._switches_off()
            self.windows.clear()
            self.requests.clear()
            self._wake.set()
            self._wake = threading.Event()

    def remaining(self, token: str = "") -> int:
        """What is left of the primary limit of ``token`` ("": anonymous requests)."""
        with self._lock:
            return self._window(token).remaining

    def use_up_rate_limit(self, token: str = "", *, reset_in: int | None = None) -> None:
        """Spend what is left of the window of ``token``, as many requests would."""
        with self._lock:
            window = self._window(token)
            window.used = window.limit
            if reset_in is not None:
                window.reset = int(time.time()) + reset_in

    def stall(self) -> None:
        """Hold the answer back (see ``stall_seconds``) until reset() or the time is up."""
        self._wake.wait(self.stall_seconds)

    def _window(self, identity: str) -> RateWindow:
        # Called with the lock held.
        now = int(time.time())
        window = self.windows.get(identity)
        if window is None or (now >= window.reset and not window.forced):
            limit = self.authenticated_limit if identity else self.anonymous_limit
            window = self.windows[identity] = RateWindow(limit, now + WINDOW_SECONDS)
        if self.rate_limited and not window.forced:
            window.used, window.forced = window.limit, True
            window.reset = now + self.rate_limit_reset_in
        return window

    def admit(self, identity: str) -> RateWindow:
        """The window of ``identity`` if a request may go on; a rate-limit answer if not."""
        with self._lock:
            window = self._window(identity)
            if window.remaining:
                return window
        who = f"user {identity[:4]}…" if identity else "127.0.0.1"
        raise _Answer(
            self.primary_limit_status,
            f"API rate limit exceeded for {who}.",
            _rate_headers(window),
        )

    def window(self, identity: str) -> RateWindow:
        with self._lock:
            return self._window(identity)

    def spend(self, window: RateWindow) -> None:
        with self._lock:
            window.used = min(window.limit, window.used + 1)


class _Answer(Exception):
    """An error answer, raised from deep inside a handler."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _CountingReader:
    """Counts the bytes read through it."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.count += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _HeldWriter:
    """Counts the bytes written and holds them until the handler has recorded the
    request, so a client never sees an answer before the record that counts it."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.count = 0
        self._held = bytearray()

    def write(self, data: bytes) -> int:
        self.count += len(data)
        self._held += data
        return len(data)

    def flush(self) -> None:
        if self._held:
            self.raw.write(bytes(self._held))
            self._held.clear()
        self.raw.flush()

    @property
    def held(self) -> int:
        return len(self._held)

    def release(self, stall_after: int, stall: Any) -> None:
        """Send the first ``stall_after`` bytes held, ``stall()``, then the rest."""
        first, rest = bytes(self._held[:stall_after]), bytes(self._held[stall_after:])
        self._held.clear()
        self.raw.write(first)
        self.raw.flush()
        stall()
        self.raw.write(rest)
        self.raw.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _Handler(LoopbackHandler):
    owner: FakeGitHub
    server_version = "github.com"
    sys_version = ""

    @property
    def github(self) -> FakeGitHub:
        return self.owner

    def setup(self) -> None:
        super().setup()
        self.rfile = self._in = _CountingReader(self.rfile)  # type: ignore[assignment]
        self.wfile = self._out = _HeldWriter(self.wfile)  # type: ignore[assignment]
        self._in_mark = self._out_mark = 0

    def do_GET(self) -> None:
        github = self.github
        self._identity = ""
        self._window: RateWindow | None = None
        try:
            status = self._route()
        except _Answer as answer:
            status = answer.status
            body: dict[str, Any] = {"message": answer.message, "documentation_url": DOCS}
            if answer.status in (403, 422, 429):
                body["status"] = str(answer.status)
            if "Location" in answer.headers:
                body["url"] = answer.headers["Location"]
            self._send(answer.status, _json(body), headers=answer.headers)
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        github.record(
            GitHubRequest(
                self.command,
                self.path,
                status,
                self._in.count - self._in_mark,
                self._out.count - self._out_mark,
                host=host,
                authorized=bool(self.headers.get("Authorization")),
            )
        )
        self._in_mark, self._out_mark = self._in.count, self._out.count
        try:
            if github.stall_seconds and github.stall_after_bytes is not None:
                # Only an answer longer than that has a rest to hold back.
                if self._out.held > github.stall_after_bytes:
                    self._out.release(github.stall_after_bytes, github.stall)
            elif github.stall_seconds:
                github.stall()
            self._out.flush()
        except OSError:
            # The client gave up on a stalled answer; that is what the stall is for.
            self.close_connection = True

    def _route(self) -> int:
        self._check_access()
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if len(parts) < 5 or parts[0] != "repos":
            raise _Answer(404, "Not Found")
        repo = self._repo(parts[1], parts[2])
        query = parse_qs(url.query, keep_blank_values=True)
        if parts[3] == "commits":
            return self._commit(repo, "/".join(parts[4:]))
        if parts[3:5] == ["git", "trees"] and len(parts) == 6:
            return self._tree(repo, parts[5], recursive="recursive" in query)
        if parts[3:5] == ["git", "blobs"] and len(parts) == 6:
            return self._blob(repo, parts[5])
        raise _Answer(404, "Not Found")

    def _check_access(self) -> None:
        """Who asks, whether their rate limit lets them, and the faults switched on."""
        github = self.github
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if header and (
            scheme.lower() not in ("bearer", "token") or (github.token and given != github.token)
        ):
            raise _Answer(401, "Bad credentials")
        self._identity = given if header else ""
        self._window = github.admit(self._identity)
        if github.secondary_limit is not None:
            status, retry_after = github.secondary_limit
            extra = {} if retry_after is None else {"Retry-After": str(retry_after)}
            raise _Answer(status, SECONDARY_MESSAGE, extra)
        if github.server_error is not None:
            raise _Answer(github.server_error, "Server Error")
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname
        if github.redirect is not None and host == "127.0.0.1":
            status, to_host = github.redirect
            location = f"http://{to_host}:{github.port}{self.path}"
            raise _Answer(status, "Moved Permanently", {"Location": location})
        if github.token and not header:
            raise _Answer(404, "Not Found")  # a private repository is hidden

    def _repo(self, owner: str, name: str) -> Path:
        path = self.github.repo_path(owner, name)
        if not (_SAFE_NAME.fullmatch(owner) and _SAFE_NAME.fullmatch(name) and path.is_dir()):
            raise _Answer(404, "Not Found")
        return path

    def _commit(self, repo: Path, ref: str) -> int:
        if _git(repo, "rev-parse", "--verify", "--quiet", "HEAD") is None and not _refs(repo):
            raise _Answer(409, "Git Repository is empty.")
        sha = None
        if _SAFE_REF.fullmatch(ref) and not ref.startswith("-"):
            for name in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
                sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
                if sha:
                    break
        if not sha:
            raise _Answer(422, f"No commit found for SHA: {ref}")
        if SHA_MEDIA_TYPE in self.headers.get("Accept", "").replace(".v3", ""):
            body = sha.encode()
            return self._send(200, body, also_matches=f'"{sha}"', content_type=SHA_MEDIA_TYPE)
        tree = _git(repo, "rev-parse", f"{sha}^{{tree}}")
        data = {"sha": sha, "commit": {"tree": {"sha": tree}}, "url": self._url(f"commits/{sha}")}
        return self._send(200, _json(data))

    def _tree(self, repo: Path, ref: str, *, recursive: bool) -> int:
        tree = None
        if _SAFE_REF.fullmatch(ref) and not ref.startswith("-"):
            tree = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{tree}}")
        if not tree:
            raise _Answer(404, "Not Found")
        flags = ["-r", "-t"] if recursive else []
        listing = _git(repo, "ls-tree", "-z", "-l", *flags, tree, strip=False) or ""
        entries = [self._tree_entry(item) for item in listing.split("\0") if item]
        truncated = recursive and self.github.force_truncated
        if truncated:
            # GitHub cuts the array short; the client cannot know what is missing.
            entries = entries[: len(entries) // 2]
        data = {
            "sha": tree,
            "url": self._url(f"git/trees/{tree}"),
            "tree": entries,
            "truncated": truncated,
        }
        return self._send(200, _json(data))

    def _tree_entry(self, item: str) -> dict[str, Any]:
        meta, _, path = item.partition("\t")
        mode, kind, sha, size = meta.split()
        entry: dict[str, Any] = {"path": path, "mode": mode, "type": kind, "sha": sha}
        if kind == "blob":
            entry["size"] = int(size)
            entry["url"] = self._url(f"git/blobs/{sha}")
        elif kind == "tree":
            entry["url"] = self._url(f"git/trees/{sha}")
        return entry

    def _blob(self, repo: Path, sha: str) -> int:
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or _git(repo, "cat-file", "-t", sha) != "blob":
            raise _Answer(404, "Not Found")
        content = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "blob", sha], capture_output=True, check=True
        ).stdout
        if RAW_MEDIA_TYPE in self.headers.get("Accept", ""):
            return self._send(200, content, content_type=RAW_MEDIA_TYPE)
        encoded = base64.b64encode(content).decode()
        data = {
            "sha": sha,
            "node_id": base64.b64encode(f"blob:{sha}".encode()).decode(),
            "size": len(content),
            "url": self._url(f"git/blobs/{sha}"),
            "content": "".join(f"{line}\n" for line in _chunks(encoded, 60)),
            "encoding": "base64",
        }
        return self._send(200, _json(data))

    def _url(self, endpoint: str) -> str:
        parts = self.path.split("/")
        return f"{self.github.api_url}/repos/{parts[2]}/{parts[3]}/{endpoint}"

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        also_matches: str = "",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> int:
        github = self.github
        # GitHub's answers vary on Authorization: so does the ETag.
        digest = hashlib.sha256(self._identity.encode() + b"\0" + body).hexdigest()
        etag = f'W/"{digest[:40]}"'
        asked = _etags(self.headers.get("If-None-Match", ""))
        if status == 200 and (_weak(etag) in asked or (also_matches and also_matches in asked)):
            status, body = 304, b""
        window = self._window or github.window("")
        if not (status == 304 and self._identity) and not (
            status in (403, 429) and window.remaining == 0
        ):
            # Only an authorized 304 is free; a refusal at zero has nothing left to spend.
            github.spend(window)
        self.send_response(status)
        for name, value in {**_rate_headers(window), **(headers or {})}.items():
            self.send_header(name, value)
        if status < 400:
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", "private, max-age=60, s-maxage=60")
            self.send_header("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
        if status != 304:
            charset = "" if content_type == RAW_MEDIA_TYPE else "; charset=utf-8"
            self.send_header("Content-Type", f"{content_type}{charset}")
            if content_type == RAW_MEDIA_TYPE and github.chunked_blobs:
                self.send_header("Transfer-Encoding", "chunked")
                body = _chunked(body)
            else:
                self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return status


def _rate_headers(window: RateWindow) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining),
        "X-RateLimit-Used": str(min(window.used, window.limit)),
        "X-RateLimit-Reset": str(window.reset),
        "X-RateLimit-Resource": "core",
    }


def _git(repo: Path, *args: str, strip: bool = True) -> str | None:
    """The output of a git command in ``repo``, or None when it fails."""
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return result.stdout.strip() if strip else result.stdout


def _refs(repo: Path) -> bool:
    return bool(_git(repo, "for-each-ref", "--count=1"))


def _etags(header: str) -> set[str]:
    # If-None-Match uses the weak comparison: W/"x" matches "x".
    return {_weak(tag.strip()) for tag in header.split(",") if tag.strip()}


def _weak(tag: str) -> str:
    return tag.removeprefix("W/")


def _chunked(body: bytes, size: int = 64 * 1024) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
             for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(parts) + b"0\r\n\r\n"


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


# Bound here, not in the class: the handler is defined below the server it serves.
FakeGitHub.handler = _Handler
