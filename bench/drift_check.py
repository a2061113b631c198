"""9. Drift check cost: API requests and time per service for 1,000 services (quick: 100).

Each service has three objects (ConfigMap, Deployment, Service: the apply benchmark's
mix) in one namespace of a real kube-apiserver, applied once. The drift check of a
service is the diff of its last bundle against the cluster (``KubernetesApplyer.diff``,
what ``check_drift`` runs): one shared applyer, as a worker process keeps one per
cluster. Every request it sends is counted. Then every tenth service is drifted by hand
(a value of its ConfigMap edited; a key added by hand would be another manager's field,
no drift) and the checks run again: drift costs no extra request. Target: a bounded
number of requests per service, two per object (a GET and a dry-run apply) plus
discovery shared by all.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Context, median, mixed_objects, say, start_kube, to_yaml

OBJECTS_PER_SERVICE = 3
NAMESPACE = "drift-bench"


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.applyers.kubediff import UNCHANGED
    from syncworker.applyers.kubernetes import KubernetesApplyer

    services = ctx.count(1000, 100)
    bundles = [to_yaml(_objects(i)) for i in range(services)]
    with ctx.stack() as stack:
        env, kube = start_kube(ctx, stack)
        kube.create_namespace(NAMESPACE)
        applyer = KubernetesApplyer(kubeconfig=str(env.kubeconfig), namespace=NAMESPACE)
        stack.callback(applyer.close)
        if not applyer.apply(to_yaml([o for b in range(services) for o in _objects(b)]))[0]:
            raise RuntimeError("the setup apply failed")
        api, _, _ = applyer._connect()
        sent = [0]
        send = api.request

        def counted(*args: Any, **kwargs: Any) -> Any:
            sent[0] += 1
            return send(*args, **kwargs)

        api.request = counted  # type: ignore[method-assign]

        def check_all(label: str) -> tuple[list[int], list[float], int]:
            requests, seconds, drifted = [], [], 0
            for bundle in bundles:
                before, started = sent[0], time.perf_counter()
                result = applyer.diff(bundle)
                seconds.append(time.perf_counter() - started)
                requests.append(sent[0] - before)
                drifted += any(o.action != UNCHANGED for o in result)
            say(f"drift check ({label}): {services} services, {sum(requests)} requests, "
                f"{sum(seconds):.1f} s, {drifted} drifted")  # fmt: skip
            return requests, seconds, drifted

        clean_requests, clean_seconds, clean_drifted = check_all("in sync")
        for i in range(0, services, 10):
            response = kube.session.patch(
                f"{env.server}/api/v1/namespaces/{NAMESPACE}/configmaps/s{i:04d}-0000",
                json={"data": {"LOG_LEVEL": "debug"}},  # a field we own
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=30,
                verify=kube.verify,
            )
            response.raise_for_status()
        drift_requests, _, drifted = check_all("every tenth drifted")
    if clean_drifted or drifted != len(range(0, services, 10)):
        raise RuntimeError(f"wrong verdicts: {clean_drifted} drifted in sync, {drifted} after")
    steady = clean_requests[1:]  # the first check also fills the discovery cache
    return {
        "services": services,
        "objects_per_service": OBJECTS_PER_SERVICE,
        "requests_total": sum(clean_requests),
        "requests_first_service": clean_requests[0],
        "requests_per_service_max": max(steady),
        "requests_per_service_max_drifted": max(drift_requests[1:]),
        "check_ms_median": round(median(clean_seconds) * 1000, 2),
        "all_services_s": round(sum(clean_seconds), 2),
        "drifted_found": drifted,
    }


def _objects(index: int) -> list[dict[str, Any]]:
    """A ConfigMap, a Deployment and a Service (of the apply benchmark's ten)."""
    ten = mixed_objects(10, f"s{index:04d}", NAMESPACE)
    return [ten[0], ten[4], ten[7]]


def targets(result: dict[str, Any]) -> dict[str, Any]:
    bound = 2 * result["objects_per_service"]
    worst = max(result["requests_per_service_max"], result["requests_per_service_max_drifted"])
    return {
        "drift_check_requests": {
            "target": f"requests per service <= 2 per object ({bound})",
            "value": f"{worst} per service of {result['objects_per_service']} objects",
            "met": worst <= bound,
        }
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    n, k = result["services"], result["objects_per_service"]
    return [
        (f"drift check, {n} services of {k} objects", f"{result['all_services_s']:.1f} s"),
        ("  API requests per service (in sync / drifted)",
         f"{result['requests_per_service_max']} / {result['requests_per_service_max_drifted']}"),
        ("  first service (discovery included)", f"{result['requests_first_service']}"),
        ("  median check of one service", f"{result['check_ms_median']:.1f} ms"),
    ]  # fmt: skip
