"""A stand-in for the ``nokube`` binary, served over HTTP the way a release URL serves it.

The real nokube CLI needs a nokube cluster and cannot run here, so tests download this
small Python script instead. It records every invocation (argv and stdin, one JSON line
each) to a file, answers ``--help`` like a healthy binary, and fails an apply whose YAML
contains ``nokube-standin: fail``.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

FAIL_MARKER = "nokube-standin: fail"

_SCRIPT = '''#!{python}
"""Stand-in for the nokube CLI (tests only): records argv and stdin, then exits."""
import json
import sys

args = sys.argv[1:]
data = sys.stdin.read() if args[:1] == ["apply"] else ""
with open({record!r}, "a") as record:
    record.write(json.dumps({{"argv": args, "stdin": data}}) + "\\n")
if args[:1] == ["--help"]:
    print("nokube stand-in: apply --cluster NAME < manifests.yaml")
    sys.exit(0)
if args[:2] == ["apply", "--cluster"] and len(args) == 3:
    if {fail!r} in data:
        print("error: the cluster refused the manifests", file=sys.stderr)
        sys.exit(3)
    print("applied " + str(data.count("kind:")) + " objects to cluster " + args[2])
    sys.exit(0)
print("unknown command: " + " ".join(args), file=sys.stderr)
sys.exit(2)
'''


def standin_script(record: Path) -> bytes:
    """The stand-in's source, writing its record to ``record``."""
    return _SCRIPT.format(python=sys.executable, record=str(record), fail=FAIL_MARKER).encode()


def read_record(record: Path) -> list[dict[str, Any]]:
    """Every invocation the stand-in recorded, oldest first."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


class NokubeDownloadServer:
    """Serves the stand-in at ``url`` from a thread on a free loopback port."""

    path = "/releases/nokube-linux-amd64"

    def __init__(self, record: Path) -> None:
        self.record = record
        self.requests: list[str] = []
        body = standin_script(record)
        requests_seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests_seen.append(self.path)
                if self.path != NokubeDownloadServer.path:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def __enter__(self) -> NokubeDownloadServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
