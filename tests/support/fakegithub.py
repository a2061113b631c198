"""A stand-in for the GitHub REST API, for tests only.

github.com cannot be reached from the test bed, so this local server answers the few
endpoints the GitHub source uses the way GitHub documents them, from REAL bare Git
repositories on disk (``git`` plumbing answers every question; tests push commits with
``tests.support.gitserver.WorkingCopy``):

- ``GET /repos/{owner}/{repo}/commits/{ref}``: with ``Accept: application/vnd.github.sha``
  the body is the bare commit id and the ETag is that id quoted (GitHub documents that
  the local commit id may be sent as the ETag); otherwise a small JSON commit. An unknown
  ref is 422 "No commit found for SHA", an empty repository 409.
- ``GET /repos/{owner}/{repo}/git/trees/{sha}[?recursive=1]``: any value of
  ``recursive`` recurses, as documented; a commit id or ref names its root tree.
- ``GET /repos/{owner}/{repo}/git/blobs/{sha}``: base64 content in lines of 60.

Every answer carries a strong ETag derived from its content and honours If-None-Match
with 304; a 304 costs no rate limit. The ``X-RateLimit-*`` headers are sent on every
answer. An unknown repository is 404; with ``token`` set, a wrong token is 401 "Bad
credentials" and no token is 404 (private repositories are hidden). Switches answer 403
with ``X-RateLimit-Remaining: 0`` (``rate_limited``), 429 with ``Retry-After``
(``retry_after``) or cut recursive trees short with ``truncated: true``
(``force_truncated``). Every request is recorded with its bytes on the wire (request
line and headers in, status line, headers and body out).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.gitserver import RequestRecord
from tests.support.procs import free_port

SHA_MEDIA_TYPE = "application/vnd.github.sha"
RATE_LIMIT = 5000
DOCS = "https://docs.github.com/rest"
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SAFE_REF = re.compile(r"[A-Za-z0-9._/-]+")


class FakeGitHub:
    def __init__(self, *, token: str = "") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gitops-fakegithub-"))
        self.token = token
        self.rate_limited = False
        self.rate_limit_reset_in = 120
        self.retry_after: int | None = None
        self.force_truncated = False
        self.requests: list[RequestRecord] = []
        self.remaining = RATE_LIMIT
        self.port = free_port()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGitHub:
        server = self

        class Handler(_Handler):
            github = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

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
        """Switches off, counters cleared, a full rate limit."""
        with self._lock:
            self.token = ""
            self.rate_limited = False
            self.retry_after = None
            self.force_truncated = False
            self.remaining = RATE_LIMIT
            self.requests.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self.requests.append(entry)

    def spend(self) -> int:
        """Count one request against the primary rate limit; what is left."""
        with self._lock:
            self.remaining = max(0, self.remaining - 1)
            return self.remaining


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

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"
    server_version = "github.com"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile = self._in = _CountingReader(self.rfile)  # type: ignore[assignment]
        self.wfile = self._out = _HeldWriter(self.wfile)  # type: ignore[assignment]
        self._in_mark = self._out_mark = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        try:
            status = self._route()
        except _Answer as answer:
            status = answer.status
            body = {"message": answer.message, "documentation_url": DOCS}
            if answer.status in (403, 422, 429):
                body["status"] = str(answer.status)
            self._send(answer.status, _json(body), headers=answer.headers)
        self.github.record(
            RequestRecord(
                self.command,
                self.path,
                status,
                self._in.count - self._in_mark,
                self._out.count - self._out_mark,
            )
        )
        self._in_mark, self._out_mark = self._in.count, self._out.count

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
        github = self.github
        if github.token:
            header = self.headers.get("Authorization", "")
            if not header:
                raise _Answer(404, "Not Found")
            scheme, _, given = header.partition(" ")
            if scheme.lower() not in ("bearer", "token") or given != github.token:
                raise _Answer(401, "Bad credentials")
        if github.rate_limited:
            reset = int(time.time()) + github.rate_limit_reset_in
            raise _Answer(
                403,
                "API rate limit exceeded for user ID 1.",
                {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            )
        if github.retry_after is not None:
            raise _Answer(
                429,
                "You have exceeded a secondary rate limit. Please wait a few minutes.",
                {"Retry-After": str(github.retry_after)},
            )

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
            return self._send(200, body, etag=f'"{sha}"', content_type=SHA_MEDIA_TYPE)
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
        etag: str = "",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> int:
        etag = etag or f'"{hashlib.sha256(body).hexdigest()}"'
        if status == 200 and etag in _etags(self.headers.get("If-None-Match", "")):
            # Conditional requests answered 304 do not count against the rate limit.
            status, body = 304, b""
            remaining = self.github.remaining
        else:
            remaining = self.github.spend()
        self.send_response(status)
        rate = {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Used": str(RATE_LIMIT - remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }
        for name, value in {**rate, **(headers or {})}.items():
            self.send_header(name, value)
        if status < 400:
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", "private, max-age=60, s-maxage=60")
            self.send_header("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
        if status != 304:
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return status


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
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]
