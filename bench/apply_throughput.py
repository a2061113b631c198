"""3. Apply throughput: our default applyer against ``kubectl apply --server-side``.

One service of 1,000 objects (400 ConfigMaps, 300 Deployments, 300 headless Services),
rendered as the product renders a service's bundle (our labels added), in 20 files of 50
documents, applied to a fresh namespace each run of a real kube-apiserver: by
``KubernetesApplyer.apply`` (this process, a new applyer each run, the files joined into
one bundle) and by ``kubectl apply --server-side -f`` the 20 files (kubectl built at the
server's version), runs alternating after one uncounted warm-up run of each. Then the
unchanged bundle again: the same applyer instance applies it a second time (and kubectl
the same files again, for comparison). CPU seconds of the applying process and of the
apiserver are read from /proc around each run, and the requests the apiserver served from
its own metrics. A last, separate run of ours is profiled with a sampling profiler over
its applying threads.

Then a commit that changes one file of the service (one ConfigMap's value): applied after
the first commit by the same applyer (one worker) and by a new applyer (as after a
restart, or on another worker); the objects written are counted by resourceVersion, every
object's before and after, on the apiserver.

Targets: ours >= 3x faster than kubectl; re-sync <= 10% of the full apply; the one-file
change writes one object.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import (
    Context,
    InThread,
    Kube,
    median,
    mixed_objects,
    say,
    short_name,
    start_kube,
    to_yaml,
)
from syncworker.render.bundle import dump_yaml

PER_FILE = 50
KINDS = (("/api/v1", "configmaps"), ("/apis/apps/v1", "deployments"), ("/api/v1", "services"))
POOL_THREADS = ("kube-apply",)  # thread_name_prefix of the applyer's pool
KUBECTL_TIMEOUT = 600


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def pids_matching(text: str) -> list[int]:
    """Processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry))
    return found


_IDLE = {
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("queue.py", "get"),
    ("concurrent/futures/thread.py", "_worker"),
}


# Frames every pool thread has: left out of the inclusive counts.
_PLUMBING = {"threading.py", "concurrent/futures/thread.py"}


class ThreadSampler(InThread):
    """A sampling profiler over threads of this process (cProfile sees one thread; the
    applyer works in a pool): the calling thread and the threads whose names start with
    one of ``prefixes``. Every ``interval`` seconds the innermost Python function of each
    busy one is counted, and every function on its stack."""

    def __init__(self, prefixes: tuple[str, ...], interval: float = 0.002) -> None:
        self.prefixes = prefixes
        self.interval = interval
        self.own: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.busy = 0
        self.idle = 0
        self._caller = threading.get_ident()

    @staticmethod
    def _key(frame: FrameType) -> tuple[str, str]:
        return short_name(frame.f_code.co_filename), frame.f_code.co_name

    def _watched(self) -> set[int]:
        watched = {self._caller}
        for thread in threading.enumerate():
            if thread.ident is not None and thread.name.startswith(self.prefixes):
                watched.add(thread.ident)
        return watched

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            watched = self._watched()
            for ident, frame in sys._current_frames().items():
                if ident not in watched:
                    continue
                leaf = self._key(frame)
                if leaf in _IDLE:
                    self.idle += 1
                    continue
                self.busy += 1
                self.own[f"{leaf[1]} ({leaf[0]})"] += 1
                seen = set()
                walker: FrameType | None = frame
                while walker is not None:
                    filename, func = self._key(walker)
                    name = f"{func} ({filename})"
                    if name not in seen and filename not in _PLUMBING:
                        seen.add(name)
                        self.inclusive[name] += 1
                    walker = walker.f_back

    def report(self, top: int = 10) -> dict[str, Any]:
        busy = max(self.busy, 1)

        def share(counter: Counter[str]) -> list[dict[str, Any]]:
            return [
                {"function": name, "share": round(count / busy, 3)}
                for name, count in counter.most_common(top)
            ]

        return {
            "busy_thread_samples": self.busy,
            "idle_thread_samples": self.idle,
            "by_own_samples": share(self.own),
            "by_inclusive_samples": share(self.inclusive),
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.applyers.kubernetes import KubernetesApplyer

    count = ctx.count(1000, 200)
    runs = ctx.count(3, 1)
    objects = _rendered(mixed_objects(count, "obj"))
    changed = _rendered(_one_changed(mixed_objects(count, "obj")), commit="1" * 40)
    changed_bundle = "".join(
        dump_yaml(changed[start : start + PER_FILE]) for start in range(0, count, PER_FILE)
    )
    files_dir = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    with ctx.stack() as stack:
        stack.callback(shutil.rmtree, files_dir, ignore_errors=True)
        texts = []
        for start in range(0, count, PER_FILE):
            text = dump_yaml(objects[start : start + PER_FILE])
            (files_dir / f"objects-{start // PER_FILE:02d}.yaml").write_text(text)
            texts.append(text)
        bundle = "".join(texts)  # the text of the bundle as the product renders it
        env, kube = start_kube(ctx, stack)
        apiserver = pids_matching(str(env.workdir))
        cache_dir = files_dir / "kubectl-cache"

        def check(namespace: str) -> None:
            found = sum(
                kube.count(f"{prefix}/namespaces/{namespace}/{plural}")
                for prefix, plural in (
                    ("/api/v1", "configmaps"),
                    ("/apis/apps/v1", "deployments"),
                    ("/api/v1", "services"),
                )
            )
            if found != count:
                raise RuntimeError(f"{namespace}: {found} objects on the server, not {count}")

        def ours(namespace: str) -> dict[str, float]:
            applyer = KubernetesApplyer(kubeconfig=str(env.kubeconfig), namespace=namespace)
            try:
                full = _timed(lambda: applyer.apply(bundle), kube, apiserver, time.process_time)
                resync = _timed(lambda: applyer.apply(bundle), kube, apiserver, time.process_time)
            finally:
                applyer.close()
            return {**_prefixed("full", full), **_prefixed("resync", resync)}

        def kubectl(namespace: str) -> dict[str, float]:
            command = [
                *env.kubectl_command("apply", "--server-side", "-n", namespace),
                f"--cache-dir={cache_dir}",
                *[arg for f in sorted(files_dir.glob("*.yaml")) for arg in ("-f", str(f))],
            ]
            full = _timed(lambda: _kubectl(command), kube, apiserver, _children_cpu)
            resync = _timed(lambda: _kubectl(command), kube, apiserver, _children_cpu)
            return {**_prefixed("full", full), **_prefixed("resync", resync)}

        # One run of each first, not counted: the apiserver's first writes of each kind
        # (and kubectl's discovery cache) should not weigh on whichever runs first.
        for who, fn in (("ours", ours), ("kubectl", kubectl)):
            kube.create_namespace(f"apply-{who}-warmup")
            fn(f"apply-{who}-warmup")

        measured: dict[str, list[dict[str, float]]] = {"ours": [], "kubectl": []}
        for r in range(runs):
            for who, fn in (("ours", ours), ("kubectl", kubectl)):
                namespace = f"apply-{who}-{r}"
                kube.create_namespace(namespace)
                sample = fn(namespace)
                check(namespace)
                measured[who].append(sample)
                say(f"apply {who} run {r + 1}/{runs}: {sample}")

        commit_change = {
            who: _one_file_change(env, kube, apiserver, bundle, changed_bundle, who, count)
            for who in ("same_worker", "new_worker")
        }

        namespace = "apply-ours-profiled"
        kube.create_namespace(namespace)
        applyer = KubernetesApplyer(kubeconfig=str(env.kubeconfig), namespace=namespace)
        try:
            with ThreadSampler(POOL_THREADS) as full_profile:
                applyer.apply(bundle)
            with ThreadSampler(POOL_THREADS) as resync_profile:
                applyer.apply(bundle)
        finally:
            applyer.close()

    def med(who: str, key: str) -> float:
        return round(median([m.get(key, 0) for m in measured[who]]), 4)

    summary = {
        who: {key: med(who, key) for key in sorted({k for m in measured[who] for k in m})}
        for who in ("ours", "kubectl")
    }
    return {
        "objects": count,
        "files": len(texts),
        "runs_each": runs,
        "runs": measured,
        "median": summary,
        "speedup_vs_kubectl": round(summary["kubectl"]["full_s"] / summary["ours"]["full_s"], 2),
        **_bounds(summary, os.cpu_count() or 1),
        "resync_share": round(summary["ours"]["resync_s"] / summary["ours"]["full_s"], 3),
        "kubectl_resync_share": round(
            summary["kubectl"]["resync_s"] / summary["kubectl"]["full_s"], 3
        ),
        "objects_per_second": {
            "ours": round(count / summary["ours"]["full_s"], 1),
            "kubectl": round(count / summary["kubectl"]["full_s"], 1),
        },
        "one_file_change": commit_change,
        "profile_full_apply": full_profile.report(),
        "profile_resync": resync_profile.report(),
    }


def _bounds(summary: dict[str, dict[str, float]], cores: int) -> dict[str, Any]:
    """What CPU allows: our full apply cannot take less than its CPU seconds (ours and the
    apiserver's) spread over every core, nor, with the apiserver on cores of its own, less
    than our client's CPU seconds (one process). kubectl's time over each bound."""
    ours, kubectl = summary["ours"], summary["kubectl"]
    cpu = ours["full_client_cpu_s"] + ours["full_apiserver_cpu_s"]
    return {
        "cores": cores,
        "ours_full_cpu_s": round(cpu, 3),
        "speedup_ceiling_here": round(kubectl["full_s"] / max(cpu / cores, 1e-9), 2),
        "speedup_client_side": round(kubectl["full_s"] / max(ours["full_client_cpu_s"], 1e-9), 2),
    }


def _one_changed(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with one ConfigMap's value changed (one in the middle)."""
    index = len(objects) // 2 // 10 * 10  # the pattern starts each ten with ConfigMaps
    assert objects[index]["kind"] == "ConfigMap"
    objects[index]["data"]["LOG_LEVEL"] = "debug"
    return objects


def _versions(kube: Kube, namespace: str) -> dict[str, str]:
    """kind/name -> resourceVersion of every object the benchmark applies to ``namespace``."""
    found: dict[str, str] = {}
    for prefix, plural in KINDS:
        response = kube.get(f"{prefix}/namespaces/{namespace}/{plural}")
        response.raise_for_status()
        for item in response.json()["items"]:
            found[f"{plural}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return found


def _one_file_change(
    env: Any, kube: Kube, apiserver: list[int], first: str, second: str, who: str, count: int
) -> dict[str, Any]:
    """Apply ``first`` to a fresh namespace, then ``second`` (one object changed) with the
    same applyer or, for ``new_worker``, a new one; the objects the second apply wrote."""
    from syncworker.applyers.kubernetes import KubernetesApplyer

    namespace = f"apply-commit-{who.replace('_', '-')}"
    kube.create_namespace(namespace)
    applyer = KubernetesApplyer(kubeconfig=str(env.kubeconfig), namespace=namespace)
    try:
        ok, output = applyer.apply(first)
        if not ok:
            raise RuntimeError(f"apply failed: {output[-2000:]}")
        before = _versions(kube, namespace)
        if who == "new_worker":
            applyer.close()
            applyer = KubernetesApplyer(kubeconfig=str(env.kubeconfig), namespace=namespace)
        sample: dict[str, Any] = _timed(
            lambda: applyer.apply(second), kube, apiserver, time.process_time
        )
    finally:
        applyer.close()
    after = _versions(kube, namespace)
    if sorted(after) != sorted(before) or len(after) != count:
        raise RuntimeError(f"{namespace}: {len(after)} objects, not {count}")
    sample["written"] = sorted(key for key in after if after[key] != before[key])
    say(f"one-file change, {who}: {len(sample['written'])} written, {sample}")
    return sample


def _rendered(objects: list[dict[str, Any]], commit: str = "0" * 40) -> list[dict[str, Any]]:
    """The objects as the product renders a service's bundle: our labels added, in
    apply order. No namespace: each run names its own."""
    from syncworker.render import RenderOptions, render_bundle
    from syncworker.sources.base import SourceFile

    files = [
        SourceFile(
            f"deploy/bench/objects-{n:02d}.yaml", to_yaml(objects[i : i + PER_FILE]).encode()
        )
        for n, i in enumerate(range(0, len(objects), PER_FILE))
    ]
    options = RenderOptions(service="bench-apply", base_dir="deploy/bench", commit=commit)
    return list(render_bundle(files, options).objects)


def _kubectl(command: list[str]) -> tuple[bool, str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl failed: {result.stderr[-2000:]}")
    return True, result.stdout


def _timed(fn: Any, kube: Kube, apiserver: list[int], client_cpu: Any) -> dict[str, float]:
    requests_before = request_counts(kube)  # read outside the CPU and time windows
    server_before, client_before = cpu_seconds(apiserver), client_cpu()
    started = time.perf_counter()
    ok, output = fn()
    seconds = time.perf_counter() - started
    if not ok:
        raise RuntimeError(f"apply failed: {output[-2000:]}")
    client = client_cpu() - client_before
    server = cpu_seconds(apiserver) - server_before
    requests_after = request_counts(kube)
    sent = {
        f"requests_{verb}": n - requests_before.get(verb, 0)
        for verb, n in requests_after.items()
        if n > requests_before.get(verb, 0)
    }
    sent["requests_GET"] = sent.get("requests_GET", 1) - 1  # the /metrics read itself
    return {
        "s": round(seconds, 4),
        "client_cpu_s": round(client, 3),
        "apiserver_cpu_s": round(server, 3),
        **sent,
    }


_REQUEST_TOTAL = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$", re.M)


def request_counts(kube: Kube) -> dict[str, int]:
    """Requests the apiserver has served so far, by verb (its own metrics)."""
    counts: Counter[str] = Counter()
    for labels, value in _REQUEST_TOTAL.findall(kube.get("/metrics").text):
        verb = re.search(r'verb="([A-Z]+)"', labels)
        if verb:
            counts[verb.group(1)] += int(float(value))
    return dict(counts)


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in values.items()}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    speedup = result["speedup_vs_kubectl"]
    share = result["resync_share"]
    return {
        "apply_speedup": {
            "target": "our applyer >= 3x faster than kubectl apply --server-side",
            "value": f"{speedup:.2f}x ({result['median']['ours']['full_s']:.2f} s vs "
            f"{result['median']['kubectl']['full_s']:.2f} s, {result['objects']} objects)",
            "met": speedup >= 3.0,
        },
        "apply_resync": {
            "target": "re-sync of the unchanged bundle <= 10% of the full apply",
            "value": f"{share:.0%} ({result['median']['ours']['resync_s']:.2f} s)",
            "met": share <= 0.10,
        },
        "apply_one_file_change": {
            "target": "a commit changing one object of a 1,000-object service writes 1 object",
            "value": ", ".join(
                f"{len(m['written'])} written ({who.replace('_', ' ')})"
                for who, m in result["one_file_change"].items()
            ),
            "met": all(len(m["written"]) == 1 for m in result["one_file_change"].values()),
        },
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    ours, kubectl = result["median"]["ours"], result["median"]["kubectl"]
    n = result["objects"]

    def line(m: dict[str, float], phase: str) -> str:
        sent = ", ".join(
            f"{key.rpartition('_')[2]} {value:g}"
            for key, value in m.items()
            if key.startswith(f"{phase}_requests_") and value
        )
        return (
            f"{m[f'{phase}_s']:.2f} s (client CPU {m[f'{phase}_client_cpu_s']:.1f} s, "
            f"apiserver CPU {m[f'{phase}_apiserver_cpu_s']:.1f} s; requests: {sent or 'none'})"
        )

    return [
        (f"ours, full apply of {n} objects (median of {result['runs_each']})", line(ours, "full")),
        (f"kubectl --server-side, full apply of {n}", line(kubectl, "full")),
        ("speed-up, ours vs kubectl", f"{result['speedup_vs_kubectl']:.2f}x"),
        (
            f"  ceiling here: kubectl / (our CPU {result['ours_full_cpu_s']:.1f} s over "
            f"{result['cores']} cores)",
            f"{result['speedup_ceiling_here']:.2f}x",
        ),
        ("  client side alone: kubectl / our client CPU", f"{result['speedup_client_side']:.2f}x"),
        ("ours, re-sync of the unchanged bundle", line(ours, "resync")),
        ("  re-sync / full apply", f"{result['resync_share']:.0%}"),
        ("kubectl, re-apply of the same files", line(kubectl, "resync")),
        ("  kubectl re-apply / full apply", f"{result['kubectl_resync_share']:.0%}"),
        *(
            (
                f"one-file change (1 object) of the {n}, {who.replace('_', ' ')}: objects written",
                f"{len(m['written'])} ({_prefixed_line(m)})",
            )
            for who, m in result["one_file_change"].items()
        ),
    ]


def _prefixed_line(m: dict[str, Any]) -> str:
    sent = ", ".join(
        f"{key.rpartition('_')[2]} {value:g}"
        for key, value in m.items()
        if key.startswith("requests_") and value
    )
    return (
        f"{m['s']:.2f} s, client CPU {m['client_cpu_s']:.2f} s, apiserver CPU "
        f"{m['apiserver_cpu_s']:.2f} s; requests: {sent or 'none'}"
    )


def details(result: dict[str, Any]) -> list[str]:
    lines = []
    for title, key in (("full apply", "profile_full_apply"), ("re-sync", "profile_resync")):
        profile = result[key]
        ours = ", ".join(
            f"`{e['function']}` {e['share']:.0%}"
            for e in profile["by_inclusive_samples"]
            if "syncworker/" in e["function"]
        )
        own = ", ".join(
            f"`{e['function']}` {e['share']:.0%}" for e in profile["by_own_samples"][:4]
        )
        lines += [
            f"**Apply, {title}** (ours; a sampling profiler over the applying threads, share "
            f"of {profile['busy_thread_samples']:,} busy-thread samples): innermost {own}; "
            f"our code on the stack {ours}.",
            "",
        ]
    return lines
