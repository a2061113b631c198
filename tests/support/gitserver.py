"""A real Git server on loopback: git's own ``git http-backend`` (smart HTTP) run as CGI
behind a small threaded HTTP server.

Push and fetch go through the genuine protocol implementation; this module only moves
bytes between the socket and the CGI process. It also counts requests and bytes, so
tests and benchmarks can assert what a poll costs, and can require HTTP basic auth to
test credentials.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.httpserver import LoopbackHandler, LoopbackServer, RequestRecord

__all__ = ["GitHttpServer", "RequestRecord", "WorkingCopy"]

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


class _GitHandler(LoopbackHandler):
    owner: GitHttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _authorized(self) -> bool:
        if self.owner.auth is None:
            return True
        header = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(":".join(self.owner.auth).encode()).decode()
        return hmac.compare_digest(header.encode(), expected.encode())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        if not self._authorized():
            payload = b"authentication required\n"
            self.owner.record(RequestRecord(self.command, self.path, 401, len(body), len(payload)))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": self.owner.auth[0] if self.owner.auth else "anonymous",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        result = subprocess.run([HTTP_BACKEND], input=body, capture_output=True, env=env)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            if not line:
                continue
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers.append((name, value.strip()))
        # Recorded before answering, so a client that has its answer sees it counted.
        self.owner.record(RequestRecord(self.command, path, status, len(body), len(payload)))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHttpServer(LoopbackServer[RequestRecord]):
    handler = _GitHandler

    def __init__(self, root: Path | None = None, auth: tuple[str, str] | None = None) -> None:
        super().__init__(root, prefix="gitops-git-")
        self.auth = auth

    def create_repo(self, name: str, *, branch: str = "main") -> str:
        """Create an empty bare repository that accepts pushes; return its URL."""
        path = self.root / f"{name}.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", f"--initial-branch={branch}", str(path)], check=True
        )
        subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
        # Let a client fetch exactly the commit it learnt from ls-remote.
        subprocess.run(
            ["git", "-C", str(path), "config", "uploadpack.allowReachableSHA1InWant", "true"],
            check=True,
        )
        return f"{self.base_url}/{name}.git"


class WorkingCopy:
    """A clone of one repository on the server, for tests that push commits."""

    def __init__(self, url: str, *, branch: str = "main") -> None:
        self.url = url
        self.branch = branch
        self.path = Path(tempfile.mkdtemp(prefix="gitops-wc-"))
        self._git("init", "-q", f"--initial-branch={branch}")
        self._git("remote", "add", "origin", url)

    def _git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.path),
        }
        result = subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, env=env
        )
        return result.stdout.decode().strip()

    def commit(self, files: dict[str, str | bytes | None], message: str = "change") -> str:
        """Write (or, for None, delete) files, commit, push; return the new commit id."""
        for rel, content in files.items():
            target = self.path / rel
            if content is None:
                if target.exists():
                    target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        self._git("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}")
        return self._git("rev-parse", "HEAD")

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
