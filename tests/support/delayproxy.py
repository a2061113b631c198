"""A loopback TCP proxy in front of a server (the kube-apiserver): each byte arrives
``delay`` seconds after it was sent, in each direction, as over a long link (a round
trip costs ``2 * delay`` more), without limiting throughput; and ``paused()`` holds
everything in flight, as a link that stalls. TLS passes through untouched: the client
still talks to, and verifies, the real server.

It stands in for the network between a GitOps controller and a remote cluster, which
this machine does not have: real clusters are remote, the test apiserver is local.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class DelayProxy:
    def __init__(self, upstream: tuple[str, int], *, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self.port = 0
        self._listener: socket.socket | None = None
        self._open = threading.Event()  # set: bytes flow; clear: held
        self._open.set()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []

    def start(self) -> DelayProxy:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True, name="delayproxy").start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._open.set()
        if self._listener is not None:
            self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold every byte until the block ends (keep it short: clients time out)."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def kubeconfig(self, original: Path, target: Path) -> Path:
        """A copy of a (JSON) kubeconfig whose server is this proxy."""
        config = json.loads(original.read_text())
        for cluster in config["clusters"]:
            server = cluster["cluster"]["server"]
            scheme, _, _ = server.partition("://")
            cluster["cluster"]["server"] = f"{scheme}://127.0.0.1:{self.port}"
        target.write_text(json.dumps(config))
        target.chmod(0o600)
        return target

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Read as fast as bytes come; write each chunk once it is ``delay`` old."""
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                chunks.put((time.monotonic() + self.delay, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = chunks.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._open.wait()
                try:
                    if not data:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()
