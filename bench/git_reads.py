"""12. Git reads: what the Git source costs per service fetch, one by one and in batches.

One repository on the Git smart-HTTP server holding 1,000 services x 10 objects (the
scale benchmark's layout: two files each; quick: 200), fetched into the source's cache
first (a cold fetch happens once per commit, not per service). Then 200 services (quick:
60) read as the fetch stage reads a plain service (its directory, the root
``.gitopsignore``, the ids of what it read): one new source per service, as one fetch
task per deployment does; one source for all without prefetch; and one source per batch
of 20 with ``prefetch`` of the batch's directories first. Git processes are counted by
the source itself; CPU is this process's and its children's (the git processes). Best
of 3 (quick: 1). No target: the figures say what a fetch costs in git.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

from bench.common import Context, config_map, deployment, say, service, to_yaml
from tests.support.gitserver import GitHttpServer, WorkingCopy

BATCH = 20


def _service_files(index: int) -> dict[str, str | bytes | None]:
    name = f"svc-{index:04d}"
    configs = [config_map(f"{name}-config-{k}") for k in range(4)]
    app = [deployment(f"{name}-{k}") for k in range(3)] + [service(f"{name}-{k}") for k in range(3)]
    return {
        f"services/{name}/config.yaml": to_yaml(configs),
        f"services/{name}/app.yaml": to_yaml(app),
    }


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.sources import GitSource

    total, read = ctx.count(1000, 200), ctx.count(200, 60)
    repeat = ctx.count(3, 1)
    workspace = ctx.workdir / "git-reads"
    with ctx.stack() as stack:
        git = stack.start(GitHttpServer())
        copy = WorkingCopy(git.create_repo("git-reads"))
        stack.callback(copy.cleanup)
        files: dict[str, str | bytes | None] = {}
        for index in range(total):
            files.update(_service_files(index))
        commit = copy.commit(files, message=f"{total} services")
        dirs = [f"services/svc-{index:04d}" for index in range(read)]

        def source() -> GitSource:
            return GitSource(copy.url, branch="main", workspace=workspace)

        source().ensure_commit(commit)

        def fetch(src: GitSource, directory: str) -> None:
            src.read_tree(commit, directory)
            src.read_file(commit, ".gitopsignore")
            src.tree_ids(commit, [directory, ".gitopsignore"])

        def one_by_one() -> list[GitSource]:
            sources = []
            for directory in dirs:
                sources.append(source())
                fetch(sources[-1], directory)
            return sources

        def one_source() -> list[GitSource]:
            src = source()
            for directory in dirs:
                fetch(src, directory)
            return [src]

        def batches() -> list[GitSource]:
            sources = []
            for start in range(0, len(dirs), BATCH):
                src, batch = source(), dirs[start : start + BATCH]
                src.prefetch(commit, batch)
                for directory in batch:
                    fetch(src, directory)
                sources.append(src)
            return sources

        ways: dict[str, Callable[[], list[GitSource]]] = {
            "one_by_one": one_by_one,
            "one_source": one_source,
            f"batch_of_{BATCH}": batches,
        }
        results: dict[str, Any] = {}
        for name, way in ways.items():
            say(f"git reads: {name}, {read} services")
            best: dict[str, float] = {}
            for _ in range(repeat):
                cpu, started = _cpu_seconds(), time.perf_counter()
                sources = way()
                wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
                if not best or wall < best["wall"]:
                    best = {"wall": wall, "cpu": cpu}
                processes = sum(src.processes for src in sources)
            results[name] = {
                "git_processes_per_service": round(processes / read, 2),
                "ms_per_service": round(best["wall"] * 1e3 / read, 2),
                "cpu_ms_per_service": round(best["cpu"] * 1e3 / read, 2),
            }
    return {"services_in_repository": total, "services_read": read, "repeat": repeat, **results}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    return {}


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(f"fetch reads of {result['services_read']} services", "git processes, ms, CPU ms")]
    for name, label in (
        ("one_by_one", "  one source per service"),
        ("one_source", "  one source, no prefetch"),
        (f"batch_of_{BATCH}", f"  prefetch per batch of {BATCH}"),
    ):
        r = result[name]
        rows.append(
            (
                label,
                f"{r['git_processes_per_service']:.2f} / {r['ms_per_service']:.1f} ms / "
                f"{r['cpu_ms_per_service']:.1f} ms",
            )
        )
    return rows
