"""7. Dry-run cost: what validating a bundle before applying it costs, next to the apply.

The kubernetes applyer dry-runs every object (``dryRun=All``) before it applies any.
One bundle of 1,000 objects (quick: 200; the apply benchmark's mix of ConfigMaps,
Deployments and Services), on a real kube-apiserver, a fresh namespace and applyer each
run: the full apply (dry run of every object, then the apply of every object) next to
the same bundle with one object the server rejects added at its end, which costs exactly
the dry run of the whole bundle and applies nothing (checked). Runs alternate; medians of
three (quick: one). No target: the share says what "nothing half-applied" costs.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Context, median, mixed_objects, say, start_kube, to_yaml

REJECTED = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not-A-Name"}}


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.applyers.kubernetes import KubernetesApplyer

    count = ctx.count(1000, 200)
    runs = ctx.count(3, 1)
    objects = mixed_objects(count, "obj")
    good, bad = to_yaml(objects), to_yaml([*objects, REJECTED])
    samples: dict[str, list[float]] = {"full": [], "dry_run": []}
    with ctx.stack() as stack:
        env, kube = start_kube(ctx, stack)

        def timed(namespace: str, bundle: str) -> tuple[float, bool]:
            kube.create_namespace(namespace)
            applyer = KubernetesApplyer(kubeconfig=str(env.kubeconfig), namespace=namespace)
            try:
                started = time.perf_counter()
                ok, _ = applyer.apply(bundle)
                return time.perf_counter() - started, ok
            finally:
                applyer.close()

        timed("dry-run-warmup", good)  # the apiserver's first writes of each kind
        for r in range(runs):
            seconds, ok = timed(f"dry-run-full-{r}", good)
            if not ok:
                raise RuntimeError("the full apply failed")
            samples["full"].append(seconds)
            seconds, ok = timed(f"dry-run-only-{r}", bad)
            left = kube.count(f"/api/v1/namespaces/dry-run-only-{r}/configmaps")
            if ok or left:
                raise RuntimeError(f"the rejected bundle applied something ({left} ConfigMaps)")
            samples["dry_run"].append(seconds)
            say(f"dry run cost run {r + 1}/{runs}: full {samples['full'][-1]:.2f} s, "
                f"dry run only {seconds:.2f} s")  # fmt: skip
    full, dry = median(samples["full"]), median(samples["dry_run"])
    return {
        "objects": count,
        "runs_each": runs,
        "runs": samples,
        "full_apply_s": round(full, 3),
        "dry_run_s": round(dry, 3),
        "dry_run_share": round(dry / full, 3),
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    return {}


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    n = result["objects"]
    return [
        (f"full apply of {n} objects, dry run included", f"{result['full_apply_s']:.2f} s"),
        (f"dry run of the same {n}, one rejected", f"{result['dry_run_s']:.2f} s"),
        ("  dry run / full apply", f"{result['dry_run_share']:.0%}"),
    ]
