"""1. Poll cost: what a poll that finds nothing new costs the Git host.

One repository with 1, 10 and 100 service directories, on each source: the GitHub
stand-in (conditional GET, ETag/304) and a real Git smart-HTTP server (``ls-remote``).
Polls go through ``syncworker.pipeline.polling.poll_repository`` in this process, on the
bench PostgreSQL. Requests are counted by the servers; bytes on the wire (request line,
headers and bodies, both ways) by a TCP relay in front of each server. The first poll
(the branch is new to us, every service is queued) is reported too, for comparison.

Target: 1 request and at most 2 KB per no-change poll, flat in the number of services.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from typing import Any

from bench.common import Context, cprofile, reset_state, say
from tests.support.fakegithub import FakeGitHub
from tests.support.gitserver import GitHttpServer, WorkingCopy

SERVICE_COUNTS = (1, 10, 100)
MAX_BYTES = 2048


class CountingProxy:
    """A loopback TCP relay in front of a server that counts the bytes on the wire both
    ways (request line, headers and bodies), so both Git hosts are measured alike."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.bytes_up = self.bytes_down = self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = self.connections = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self.connections += 1
            self._open.update((client, upstream))
        down = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        down.start()
        self._pump(client, upstream, True)
        down.join(timeout=60)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.discard(sock)

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(65536):
                # Counted before it is passed on: whoever has the bytes sees them counted.
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def _service_yaml(index: int) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: svc-{index:03d}\n"
        f"data:\n  index: '{index}'\n"
    )


def _files(count: int) -> dict[str, str | bytes | None]:
    files: dict[str, str | bytes | None] = {"README.md": "poll cost benchmark\n"}
    for i in range(count):
        files[f"services/svc-{i:03d}/app.yaml"] = _service_yaml(i)
    return files


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.models import Repository, Service
    from syncworker.pipeline.polling import poll_repository

    reset_state(ctx)
    polls = ctx.count(10, 3)
    result: dict[str, Any] = {
        "no_change_polls_per_point": polls,
        "bytes": "on the wire, both directions, headers included (TCP relay)",
    }
    with ctx.stack() as stack:
        github = stack.start(FakeGitHub())
        git = stack.start(GitHttpServer())
        for source in ("github", "git"):
            server: FakeGitHub | GitHttpServer = github if source == "github" else git
            proxy = CountingProxy(server.port)
            stack.callback(proxy.close)
            points: dict[str, Any] = {}
            for count in SERVICE_COUNTS:
                name = f"poll-{count}"
                key = f"poll-{source}-{count}"
                if isinstance(server, FakeGitHub):
                    copy = WorkingCopy(str(server.create_repo("bench", name)))
                    repo = Repository.objects.create(
                        key=key,
                        provider="github",
                        owner="bench",
                        name=name,
                        url=f"https://github.invalid/bench/{name}",
                        api_url=proxy.url,
                        poll_interval=3600,
                    )
                else:
                    copy = WorkingCopy(server.create_repo(name))
                    repo = Repository.objects.create(
                        key=key, provider="git", url=f"{proxy.url}/{name}.git", poll_interval=3600
                    )
                stack.callback(copy.cleanup)
                copy.commit(_files(count), message=f"{count} services")
                Service.objects.bulk_create(
                    Service(
                        name=f"{key}-{i:03d}", repository=repo, k8s_yaml_dir=f"services/svc-{i:03d}"
                    )
                    for i in range(count)
                )
                points[str(count)] = _measure(repo.pk, server, proxy, polls, count)
                say(f"poll cost {source} {count} services: {points[str(count)]['no_change']}")
            # What one no-change poll spends its time on, in this process.
            _, profile = cprofile(functools.partial(poll_repository, repo.pk), top=8)
            result[source] = {"by_services": points, "profile_no_change_poll": profile}
    return result


def _measure(
    repo_pk: int, server: FakeGitHub | GitHttpServer, proxy: CountingProxy, polls: int, count: int
) -> dict[str, Any]:
    from syncworker.pipeline.polling import poll_repository

    server.reset_counters()
    proxy.reset()
    started = time.perf_counter()
    first = poll_repository(repo_pk)
    first_seconds = time.perf_counter() - started
    if first.error or len(first.deployments) != count:
        raise RuntimeError(f"first poll: {first}")
    first_cost = {
        "requests": len(server.requests),
        "bytes": proxy.bytes_up + proxy.bytes_down,
        "seconds": round(first_seconds, 4),
    }

    server.reset_counters()
    proxy.reset()
    seconds = []
    for _ in range(polls):
        started = time.perf_counter()
        result = poll_repository(repo_pk)
        seconds.append(time.perf_counter() - started)
        if result.error or result.deployments or result.changed:
            raise RuntimeError(f"a no-change poll did something: {result}")
    records = list(server.requests)
    no_change = {
        "requests": round(len(records) / polls, 3),
        "bytes": round((proxy.bytes_up + proxy.bytes_down) / polls, 1),
        "bytes_up": round(proxy.bytes_up / polls, 1),
        "bytes_down": round(proxy.bytes_down / polls, 1),
        "server_counted_bytes": round(sum(r.bytes_in + r.bytes_out for r in records) / polls, 1),
        "statuses": sorted({r.status for r in records}),
        "requests_seen": sorted({f"{r.method} {r.path.split('?')[0]}" for r in records}),
        "seconds_mean": round(sum(seconds) / len(seconds), 4),
    }
    return {"first_poll": first_cost, "no_change": no_change}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    worst_requests = 0.0
    worst_bytes = 0.0
    flat = True
    for source in ("github", "git"):
        points = [p["no_change"] for p in result[source]["by_services"].values()]
        worst_requests = max(worst_requests, *(p["requests"] for p in points))
        worst_bytes = max(worst_bytes, *(p["bytes"] for p in points))
        sizes = [p["bytes"] for p in points]
        requests = {p["requests"] for p in points}
        flat = flat and len(requests) == 1 and max(sizes) <= 1.1 * min(sizes)
    met = worst_requests <= 1 and worst_bytes <= MAX_BYTES and flat
    return {
        "poll_cost": {
            "target": "1 request and <= 2 KB per no-change poll, flat in services (both sources)",
            "value": f"{worst_requests:g} request(s), {worst_bytes:.0f} B worst; "
            f"{'flat' if flat else 'not flat'}",
            "met": met,
        }
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for source, label in (("github", "GitHub stand-in"), ("git", "Git smart HTTP")):
        for count, point in result[source]["by_services"].items():
            cost = point["no_change"]
            rows.append(
                (
                    f"{label}, {count} service(s): no-change poll",
                    f"{cost['requests']:g} req, {cost['bytes']:.0f} B, "
                    f"{cost['seconds_mean'] * 1000:.0f} ms",
                )
            )
        first = result[source]["by_services"][str(SERVICE_COUNTS[-1])]["first_poll"]
        rows.append(
            (
                f"{label}, {SERVICE_COUNTS[-1]} services: first poll (all new)",
                f"{first['requests']} req, {first['bytes']:,} B",
            )
        )
    return rows


def details(result: dict[str, Any]) -> list[str]:
    lines = [
        "**Poll cost.** What one no-change poll (100 services) spends its time on, "
        "in-process (cProfile, top by cumulative time):",
        "",
    ]
    for source in ("github", "git"):
        profile = result[source]["profile_no_change_poll"]
        top = ", ".join(
            f"`{e['function']}` {e['cum_s'] * 1000:.1f} ms" for e in profile["by_cumulative"][:5]
        )
        lines.append(f"- {source}: {profile['total_s'] * 1000:.1f} ms in all; {top}")
    lines.append("")
    return lines
