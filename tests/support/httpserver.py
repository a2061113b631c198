"""What the loopback HTTP servers of the tests share (the Git server, the GitHub stand-in):
a threaded server on a free port with a scratch directory, started and stopped by its
owner, and a record of every request with its bytes, so tests and benchmarks can say
what a poll costs."""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from tests.support.procs import free_port

S = TypeVar("S", bound="LoopbackServer[Any]")


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    bytes_in: int
    bytes_out: int


class LoopbackHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler; ``owner`` is the LoopbackServer it serves."""

    owner: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


R = TypeVar("R", bound="RequestRecord")


class LoopbackServer(Generic[R]):
    """``R``: what a request is recorded as (RequestRecord, or more)."""

    handler: ClassVar[type[LoopbackHandler]]

    def __init__(self, root: Path | None = None, *, prefix: str = "gitops-http-") -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_port()
        self.requests: list[R] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self: S) -> S:
        handler = type(self.handler.__name__, (self.handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def record(self, entry: R) -> None:
        with self._lock:
            self.requests.append(entry)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
