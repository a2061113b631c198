"""Run the benchmarks: ``python -m bench.run [--quick] [--only NAME,...]``.

Starts Redis and PostgreSQL (the test bed's), sets Django up on them, runs each
benchmark module (each starts what else it needs and stops it), prints a table, writes
``bench/results/latest.json`` (``latest-quick.json`` with ``--quick``) and, after a full
run of every benchmark, rewrites the results section of ``bench/README.md``.

Exits non-zero only when a benchmark failed with an error; a missed target is a result.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from bench import (
    apply_throughput,
    clusters,
    common,
    dashboard,
    drift_check,
    dry_run_cost,
    git_reads,
    kustomize_build,
    multi_worker,
    poll_cost,
    push_to_applied,
    recovery,
    scale,
    scale_large,
    sql_plans,
    status_api,
    yaml_parse,
)
from bench.common import BENCH_DIR, BenchPostgres, Context, say
from tests.support.services import RedisServer
from tests.support.stack import Stack

BENCHMARKS: dict[str, ModuleType] = {
    "poll_cost": poll_cost,
    "push_to_applied": push_to_applied,
    "apply_throughput": apply_throughput,
    "dry_run_cost": dry_run_cost,
    "drift_check": drift_check,
    "scale": scale,
    "scale_10000": scale_large,
    "status_api": status_api,
    "yaml_parse": yaml_parse,
    "kustomize_build": kustomize_build,
    "dashboard": dashboard,
    "recovery": recovery,
    "clusters": clusters,
    "multi_worker": multi_worker,
    "git_reads": git_reads,
    "sql_plans": sql_plans,
}
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
BEGIN = "<!-- results:begin (written by python -m bench.run; do not edit by hand) -->"
END = "<!-- results:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (under 5 minutes)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--services",
        type=int,
        help="services of the scale benchmark (default 1,000; quick: 100), e.g. 10000",
    )
    parser.add_argument(
        "--output", type=Path, help="write the JSON here instead of bench/results/latest*.json"
    )
    args = parser.parse_args(argv)
    selected = [name for name in args.only.split(",") if name] or list(BENCHMARKS)
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    partial = selected != list(BENCHMARKS)

    started = time.monotonic()
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="gitops-bench-"))
    results: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    errors: list[str] = []
    report: dict[str, Any] = {}
    postgres = BenchPostgres(database="gitops_bench")
    try:
        with Stack() as services:
            services.callback(shutil.rmtree, workdir, ignore_errors=True)
            say(f"starting Redis and PostgreSQL (scratch in {workdir})")
            redis = services.start(RedisServer())
            services.start(postgres)
            # Closed first: PostgreSQL's shutdown waits for its clients.
            services.callback(close_database_connections)
            ctx = Context(
                quick=args.quick,
                workdir=workdir,
                redis=redis,
                postgres=postgres,
                secret_key=secrets.token_urlsafe(40),
                services=args.services,
            )
            common.setup_django(ctx)
            report = {
                "date": date.isoformat().replace("+00:00", "Z"),
                "machine": machine(),
                "source": source(),
            }
            for name in selected:
                say(f"== {name}")
                before = load_average()
                begun = time.monotonic()
                try:
                    results[name] = BENCHMARKS[name].run(ctx)
                except Exception as exc:  # a failed benchmark is reported; the others run
                    traceback.print_exc()
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                    errors.append(name)
                runs[name] = {
                    "seconds": round(time.monotonic() - begun, 1),
                    "load_average_before": before,
                    "load_average_after": load_average(),
                }
                say(f"== {name} done in {runs[name]['seconds']}s")
            report["versions"] = versions(ctx)
            at_end = source()
            if at_end != report["source"]:
                # The product changed under the run: say so rather than mix versions silently.
                report["source"]["changed_during_run"] = at_end
                say(f"warning: the product changed during the run: {at_end}")
    except Exception:
        traceback.print_exc()
        errors.append("setup")

    targets: dict[str, Any] = {}
    for name, result in results.items():
        if "error" not in result:
            try:
                targets.update(BENCHMARKS[name].targets(result))
            except Exception:
                traceback.print_exc()
                errors.append(f"{name} targets")
    report.update(
        {
            "quick": args.quick,
            "partial": partial,
            "seconds": round(time.monotonic() - started, 1),
            "load_average_at_end": load_average(),
            "postgres_statements": postgres.statements or postgres.statements_problem,
            "benchmark_runs": runs,
            "results": results,
            "targets": targets,
            "errors": errors,
        }
    )
    print(render_table(report))
    output = args.output
    if output is None and not partial and "setup" not in errors:
        output = RESULTS_DIR / ("latest-quick.json" if args.quick else "latest.json")
    if output is not None:
        write_atomically(output, json.dumps(report, indent=2, sort_keys=False) + "\n")
        say(f"results written to {output}")
    if not args.quick and not partial and not errors:
        rewrite_readme(report)
        say(f"results section of {README} rewritten")
    return 1 if errors else 0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "mem_total_mib": mem_kib // 1024,
        "cpu_model": model,
        "kernel": platform.release(),
        "load_average_at_start": load_average(),
    }


def _command_version(argv: list[str], *, strict: bool = True) -> str:
    """The first line a command prints ("" when it cannot run or fails)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines and (result.returncode == 0 or not strict) else ""


def source() -> dict[str, Any]:
    """The commit measured, and the product files that differed from it at the start
    (others edit the product while the suite runs)."""
    root = str(BENCH_DIR.parent)
    changed = subprocess.run(
        ["git", "-C", root, "status", "--porcelain", "--", "syncworker", "gitops_site"],
        capture_output=True,
        text=True,
    ).stdout
    return {
        "commit": _command_version(["git", "-C", root, "rev-parse", "HEAD"]),
        "uncommitted": " ".join(line[3:] for line in changed.splitlines()),
    }


def versions(ctx: Context) -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for dist in (
        "django",
        "celery",
        "djangorestframework",
        "kubernetes",
        "pyyaml",
        "gunicorn",
        "psycopg",
        "redis",
        "requests",
    ):
        with contextlib.suppress(Exception):
            found[f"{dist}_py" if dist == "redis" else dist] = version(dist)
    found["pyyaml_libyaml"] = str(bool(getattr(yaml, "__with_libyaml__", False)))
    with contextlib.suppress(Exception):
        found["postgresql"] = ctx.postgres.psql("SHOW server_version")
    with contextlib.suppress(Exception):
        import redis

        with contextlib.closing(redis.Redis.from_url(ctx.redis.url)) as client:
            found["redis_server"] = str(client.info("server")["redis_version"])
    found["git"] = _command_version(["git", "--version"]).removeprefix("git version ")
    # wrk -v prints its version and exits 1.
    found["wrk"] = _command_version(["wrk", "-v"], strict=False).split(" [")[0][4:]
    found.update({k: v for k, v in ctx.facts.items() if k.startswith("kube")})
    return found


def close_database_connections() -> None:
    """PostgreSQL's shutdown waits for clients: close ours first."""
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the figures table -------------------------------------------------------------------------


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


Row = tuple[str, str, str]


def figure_rows(report: dict[str, Any]) -> list[Row]:
    """(benchmark, figure, value) rows for every result present."""
    results = report.get("results", {})
    rows: list[Row] = []
    for name, module in BENCHMARKS.items():
        result = results.get(name)
        if result is None:
            continue
        if "error" in result:
            rows.append((name, "error", str(result["error"])[:200]))
            continue
        describe: Callable[[dict[str, Any]], list[tuple[str, str]]] = module.figures
        rows.extend((name, figure, value) for figure, value in describe(result))
    return rows


def render_table(report: dict[str, Any]) -> str:
    header = ("benchmark", "figure", "value")
    rows = figure_rows(report)
    width = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, width, strict=True)).rstrip()

    lines = ["", line(header), line(tuple("-" * w for w in width))]
    lines += [line(row) for row in rows]
    lines.append("")
    quick = (
        " (quick run: smaller counts, the targets only indicative)" if report.get("quick") else ""
    )
    lines.append(f"targets{quick}:")
    for name, target in report.get("targets", {}).items():
        mark = "met   " if target["met"] else "MISSED"
        lines.append(f"  {mark} {name}: {target['value']}  (target: {target['target']})")
    if report.get("errors"):
        lines.append(f"errors in: {', '.join(report['errors'])}")
    lines.append(
        f"load average at start {_get(report, 'machine', 'load_average_at_start')}, "
        f"at end {report.get('load_average_at_end')}; {report.get('seconds')} s in all"
    )
    return "\n".join(lines)


# -- bench/README.md ---------------------------------------------------------------------------


def results_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = report.get("versions", {})
    lines = [
        f"Full run of {report['date']} ({report['seconds'] / 60:.1f} minutes), "
        "`bench/results/latest.json`.",
        "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_mib']} MiB memory, "
        f"Linux {m['kernel']}.",
        f"- Load average (1/5/15 min) at start {m['load_average_at_start']}, at end "
        f"{report['load_average_at_end']}; other engineers' test runs share the machine.",
        f"- Versions: Python {v.get('python')}, Django {v.get('django')}, Celery "
        f"{v.get('celery')}, DRF {v.get('djangorestframework')}, kubernetes client "
        f"{v.get('kubernetes')}, PyYAML {v.get('pyyaml')} (libyaml: {v.get('pyyaml_libyaml')}), "
        f"gunicorn {v.get('gunicorn')}; Kubernetes server {v.get('kubernetes_server')}, kubectl "
        f"{v.get('kubectl')}; PostgreSQL {v.get('postgresql')}, Redis {v.get('redis_server')}, "
        f"git {v.get('git')}, wrk {v.get('wrk')}.",
        f"- Source: commit {report['source']['commit'][:12]}"
        + (
            f", plus uncommitted changes to {report['source']['uncommitted']}"
            if report["source"]["uncommitted"]
            else ""
        )
        + " (at the start of the run)"
        + (
            "; **the product changed during the run**"
            if report["source"].get("changed_during_run")
            else ""
        )
        + ".",
        "",
        "| benchmark | figure | value |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in figure_rows(report)]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for target in report["targets"].values():
        lines.append(
            f"| {target['target']} | {target['value']} | {'yes' if target['met'] else '**no**'} |"
        )
    lines += ["", "Time per benchmark and load average (1 min) before → after:", ""]
    for name, run in report["benchmark_runs"].items():
        lines.append(
            f"- {name}: {run['seconds']} s, load {run['load_average_before'][0]} → "
            f"{run['load_average_after'][0]}"
        )
    details = []
    for name, module in BENCHMARKS.items():
        result = report["results"].get(name)
        explain = getattr(module, "details", None)
        if result and "error" not in result and explain is not None:
            details += explain(result)
    if details:
        lines += ["", "### Where the time goes (measured in the same run)", "", *details]
    return "\n".join(lines)


def rewrite_readme(report: dict[str, Any]) -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{README} has no results markers")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{BEGIN}\n{results_markdown(report)}\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
