"""2. Push to applied: a commit pushed, the webhook fired, until the objects are readable.

A real Git smart-HTTP server, gunicorn serving ``gitops_site.wsgi`` (the webhook), a
fetch/poll worker and an apply worker as scripts/run starts them, the kubernetes applyer
and a real kube-apiserver. Each push changes one service of three objects (ConfigMap,
Deployment, Service); the clock starts when ``git push`` has returned, the signed push
webhook is POSTed at once, and the clock stops when the objects the commit changes (the
ConfigMap's data and the Deployment's pod template carry the push's revision) read back
from the apiserver with it (polled every 10 ms). The Service does not change, and is not
written: objects carry no per-commit annotation.

Target: p50 <= 1 s, p99 <= 3 s.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import requests

from bench.common import (
    Context,
    Kube,
    config_map,
    deployment,
    reset_state,
    say,
    send_push_webhook,
    service,
    start_gitops_on_kube,
    summarize,
    to_yaml,
)
from tests.support.gitserver import WorkingCopy
from tests.support.procs import wait_until

NAMESPACE = "bench-push"
KEY = "push"
SECRET = "push-webhook-secret"
# The objects a push changes, and where each carries the push's revision.
CHANGED_OBJECTS = {
    f"/api/v1/namespaces/{NAMESPACE}/configmaps/web": ("data", "revision"),
    f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web": (
        "spec", "template", "metadata", "annotations", "revision"
    ),
}  # fmt: skip
PUSH_TIMEOUT = 60.0
WARMUP = 2


def _files(rev: int) -> dict[str, str | bytes | None]:
    return {
        "deploy/web/config.yaml": to_yaml([config_map("web", rev=rev)]),
        "deploy/web/app.yaml": to_yaml([deployment("web", rev=rev), service("web")]),
    }


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.models import Repository, Service

    reset_state(ctx)
    pushes = ctx.count(50, 10)
    with ctx.stack() as stack:
        kube, copy, cluster = start_gitops_on_kube(ctx, stack, namespace=NAMESPACE, repo="push")
        copy.commit(_files(0), message="rev 0")
        repo = Repository.objects.create(
            key=KEY, provider="git", url=copy.url, webhook_secret=SECRET, poll_interval=3600
        )
        svc = Service.objects.create(
            name="web",
            repository=repo,
            k8s_yaml_dir="deploy/web",
            namespace=NAMESPACE,
            cluster=cluster,
            # No controller-manager runs here, so a Deployment never becomes available:
            # the push-to-applied time is measured, not the health wait (scale does so too).
            wait=False,
        )

        _, web = stack.web()
        stack.worker("fetch")
        stack.worker("apply")
        session = requests.Session()
        stack.callback(session.close)

        samples: list[dict[str, Any]] = []
        failures: list[str] = []
        for i in range(1, WARMUP + pushes + 1):
            sample = _one_push(copy, session, web, kube, svc.pk, i)
            if sample.get("error"):
                failures.append(f"push {i}: {sample['error']}")
                if len(failures) > 3:
                    raise RuntimeError("; ".join(failures))
            elif i > WARMUP:
                samples.append(sample)
            if i % 10 == 0:
                say(f"push to applied: {i - WARMUP}/{pushes}, last {sample.get('seconds')}")
        statuses = _status_counts(svc.pk)

    totals = [s["seconds"] for s in samples]
    stages = {
        name: summarize([s[name] for s in samples if s.get(name) is not None])
        for name in ("webhook_answered", "queued", "apply_started", "apply_finished", "push")
    }
    return {
        "pushes": len(samples),
        "warmup_pushes": WARMUP,
        "objects_per_push": 3,
        "objects_changed_per_push": len(CHANGED_OBJECTS),
        "seconds": summarize(totals),
        "stages_since_push": stages,
        "failures": failures,
        "deployment_statuses": statuses,
    }


def _status_counts(service_pk: int) -> dict[str, int]:
    from django.db.models import Count

    from syncworker.models import Deployment

    rows = Deployment.objects.filter(service_id=service_pk).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def _one_push(
    copy: WorkingCopy,
    session: requests.Session,
    web: str,
    kube: Kube,
    service_pk: int,
    rev: int,
) -> dict[str, Any]:
    from syncworker.models import Deployment

    push_started = time.perf_counter()
    commit = copy.commit(_files(rev), message=f"rev {rev}")
    t0_wall = time.time()
    t0 = time.perf_counter()
    response = send_push_webhook(session, web, KEY, SECRET, commit)
    answered = time.perf_counter() - t0
    if response.status_code != 202:
        return {"error": f"webhook answered {response.status_code}: {response.text[:200]}"}
    pending = dict(CHANGED_OBJECTS)

    def applied() -> bool:
        for path, keys in list(pending.items()):
            reply = kube.get(path)
            if reply.status_code == 200:
                value: Any = reply.json()
                for key in keys:
                    value = value.get(key) if isinstance(value, dict) else None
                if value == str(rev):
                    del pending[path]
        return not pending

    def finished() -> Deployment | None:
        row = (
            Deployment.objects.filter(service_id=service_pk, commit_sha=commit)
            .order_by("-pk")
            .first()
        )
        return row if row is not None and row.is_final else None

    try:
        wait_until(applied, timeout=PUSH_TIMEOUT, what="the objects", interval=0.01)
        seconds = time.perf_counter() - t0
        # The deployment's own timestamps split the time into its stages.
        left = PUSH_TIMEOUT - (time.perf_counter() - t0)
        row = wait_until(finished, timeout=left, what="the deployment", interval=0.02)
    except TimeoutError:
        if pending:
            return {"error": f"{sorted(pending)} not at {commit[:12]} after {PUSH_TIMEOUT:.0f}s"}
        return {"error": f"the deployment of {commit[:12]} did not finish"}
    if row.status != Deployment.Status.SUCCEEDED:
        return {"error": f"deployment {row.pk} {row.status}: {row.error[:300]}"}

    def since(moment: datetime | None) -> float | None:
        return None if moment is None else moment.timestamp() - t0_wall

    return {
        "seconds": seconds,
        "push": t0 - push_started,
        "webhook_answered": answered,
        "queued": since(row.queued_at),
        "apply_started": since(row.started_at),
        "apply_finished": since(row.finished_at),
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    p50, p99 = result["seconds"]["p50"], result["seconds"]["p99"]
    return {
        "push_to_applied_p50": {
            "target": "push to applied p50 <= 1 s",
            "value": f"{p50:.3f} s over {result['pushes']} pushes",
            "met": p50 <= 1.0,
        },
        "push_to_applied_p99": {
            "target": "push to applied p99 <= 3 s",
            "value": f"{p99:.3f} s over {result['pushes']} pushes",
            "met": p99 <= 3.0,
        },
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    s = result["seconds"]
    stages = result["stages_since_push"]
    return [
        (
            f"push to applied ({result['pushes']} pushes)",
            f"p50 {s['p50']:.3f} s, p99 {s['p99']:.3f} s, max {s['max']:.3f} s",
        ),
        (
            "  stages, p50 since push",
            f"webhook answered {stages['webhook_answered']['p50']:.3f} s, deployment queued "
            f"{stages['queued']['p50']:.3f} s, apply started {stages['apply_started']['p50']:.3f}"
            f" s, apply finished {stages['apply_finished']['p50']:.3f} s",
        ),
        ("  git push itself (not counted)", f"p50 {stages['push']['p50']:.3f} s"),
    ]


def details(result: dict[str, Any]) -> list[str]:
    s = result["seconds"]
    st = result["stages_since_push"]
    queued = st["queued"]["p50"]
    started = st["apply_started"]["p50"] - queued
    applying = st["apply_finished"]["p50"] - st["apply_started"]["p50"]
    return [
        f"**Push to applied** (p50 {s['p50']:.3f} s): from the push to the deployment row "
        f"(webhook, poll task, ls-remote, fetch of the commit, tree ids) {queued:.3f} s; "
        f"then to the start of the apply (fetch task: read and render; apply task "
        f"picked up, cluster lock) {started:.3f} s; the apply and its bookkeeping "
        f"{applying:.3f} s (medians of each stage).",
        "",
    ]
