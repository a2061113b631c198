"""8. Recovery: the time from a SIGKILL to a final state, and nothing lost or done twice.

The system as scripts/run starts it (fetch worker, apply worker, beat with the 15 s
recovery sweep) on a broker of its own, the kubernetes applyer and a real kube-apiserver,
Redis' visibility timeout left at its default (time limit + 300 s): recovery must come
from the cluster lease and the sweep, not from redelivery.

- Apply worker: a commit changing 300 ConfigMaps is pushed and polled; once its
  deployment is ``applying``, the apply worker's whole process group is SIGKILLed and a
  new one started at once (as a supervisor would). The clock runs from the kill to the
  deployment's final state.
- Redis: a commit is polled and, while its deployment is queued or applying, Redis is
  SIGKILLed and started again empty on the same port (no persistence: every queued
  message is gone). The clock runs from the kill to the final state.

Each round checks that the commit has exactly one deployment, that it succeeded, and
that the objects read back at the new revision. Target: every recovery under 60 s, none
lost, none duplicated.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    Context,
    Kube,
    config_map,
    reset_state,
    say,
    start_gitops_on_kube,
    summarize,
    to_yaml,
)
from gitops_site.celery import app
from tests.support.procs import wait_until
from tests.support.workers import WorkerProcess, forget_broker_connections

NAMESPACE = "bench-recovery"
OBJECTS = 300
LEASE_SECONDS = "10"
ROUND_TIMEOUT = 180.0


def _files(rev: int) -> dict[str, str | bytes | None]:
    objects = [config_map(f"cm-{i:03d}", rev=rev) for i in range(OBJECTS)]
    return {"deploy/app/all.yaml": to_yaml(objects)}


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.models import Repository, Service
    from syncworker.pipeline.schedules import ensure_sweep_schedule

    reset_state(ctx)
    ensure_sweep_schedule()
    worker_kills, redis_kills = ctx.count(10, 2), ctx.count(3, 1)
    broker = ctx.redis  # the run's broker: killed and started again on its port below
    with ctx.stack() as stack:
        stack.env["GITOPS_APPLY_LOCK_TTL"] = LEASE_SECONDS
        kube, copy, cluster = start_gitops_on_kube(ctx, stack, namespace=NAMESPACE, repo="recovery")
        copy.commit(_files(0), message="rev 0")
        repo = Repository.objects.create(
            key="recovery", provider="git", url=copy.url, poll_interval=3600
        )
        svc = Service.objects.create(
            name="app",
            repository=repo,
            k8s_yaml_dir="deploy/app",
            namespace=NAMESPACE,
            cluster=cluster,
        )
        fetch = stack.worker("fetch")
        apply: list[WorkerProcess] = [stack.worker("apply")]
        beat = stack.beat(ctx.workdir / "beat-schedule")

        def poll() -> None:
            app.send_task(
                "syncworker.poll_repository",
                args=[repo.pk],
                kwargs={"trigger": "webhook"},
                queue="poll",
            )

        def measured(rev: int, **how: Any) -> dict[str, Any]:
            sample = _round(copy, kube, svc.pk, rev, poll, **how)
            # Nothing restarts the fetch worker or beat here: one that exited (crashed)
            # explains a loss, and is named with it.
            gone = [p.name for p in (fetch, apply[-1], beat) if p.proc.poll() is not None]
            if gone and sample.get("lost"):
                sample["error"] = f"{sample.get('error', '')}; exited: {', '.join(gone)}"
            return sample

        rev = 0
        rounds: dict[str, list[dict[str, Any]]] = {"apply_worker": [], "redis": []}
        rev += 1
        measured(rev, kill=None)  # warm-up: applies rev 1 plainly
        for i in range(worker_kills):
            rev += 1

            def kill_apply_worker() -> None:
                apply[-1].kill()
                apply.append(stack.worker("apply"))

            rounds["apply_worker"].append(measured(rev, kill=kill_apply_worker, when=("applying",)))
            say(f"recovery: apply worker kill {i + 1}/{worker_kills}: {rounds['apply_worker'][-1]}")
        for i in range(redis_kills):
            rev += 1

            def kill_redis() -> None:
                assert broker.proc is not None
                broker.proc.kill()
                broker.proc.wait(timeout=10)
                broker.start()  # same port, empty: every message is gone
                # This process's pooled connections lead to the dead server: a poll sent,
                # or the next benchmark's worker ping, would fail on one.
                forget_broker_connections()

            rounds["redis"].append(measured(rev, kill=kill_redis, when=("queued", "applying")))
            say(f"recovery: redis kill {i + 1}/{redis_kills}: {rounds['redis'][-1]}")

    result: dict[str, Any] = {"objects": OBJECTS, "lease_seconds": int(LEASE_SECONDS)}
    for name, samples in rounds.items():
        result[name] = {
            "kills": len(samples),
            "seconds": summarize([s["seconds"] for s in samples if "seconds" in s]),
            "max_seconds": max((s.get("seconds", float("inf")) for s in samples), default=None),
            "lost": sum(1 for s in samples if s.get("lost")),
            "duplicated": sum(1 for s in samples if s.get("duplicated")),
            "errors": [s["error"] for s in samples if "error" in s],
        }
    return result


def _round(
    copy: Any,
    kube: Kube,
    service_pk: int,
    rev: int,
    poll: Any,
    *,
    kill: Any,
    when: tuple[str, ...] = (),
) -> dict[str, Any]:
    from syncworker.models import Deployment

    commit = copy.commit(_files(rev), message=f"rev {rev}")
    poll()
    rows = Deployment.objects.filter(service_id=service_pk, commit_sha=commit)
    try:
        if kill is not None:
            wait_until(
                lambda: rows.filter(status__in=when).exists(),
                timeout=ROUND_TIMEOUT,
                what=f"a deployment of rev {rev} in {when}",
                interval=0.01,
            )
            kill()
        killed = time.perf_counter()
        # Lost messages are re-sent by the sweep; a redelivered or resent task finds the
        # row final and does nothing.
        wait_until(
            lambda: rows.filter(status__in=Deployment.FINAL_STATES).exists(),
            timeout=ROUND_TIMEOUT,
            what=f"the deployment of rev {rev}",
            interval=0.05,
        )
        seconds = time.perf_counter() - killed
    except TimeoutError as exc:
        return {"error": str(exc), "lost": True}
    time.sleep(1)  # anything duplicated would show as a second row by now
    done = list(rows)
    sample: dict[str, Any] = {"seconds": round(seconds, 2), "deployments": len(done)}
    if len(done) != 1:
        sample["duplicated"] = True
    elif done[0].status != Deployment.Status.SUCCEEDED:
        sample.update(lost=True, error=f"{done[0].status}: {done[0].error[:200]}")
    else:
        reply = kube.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/cm-{OBJECTS - 1:03d}")
        if reply.status_code != 200 or reply.json().get("data", {}).get("revision") != str(rev):
            sample.update(lost=True, error=f"objects not at rev {rev}: {reply.text[:200]}")
    return sample


def targets(result: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name in ("apply_worker", "redis"):
        part = result[name]
        worst = part["max_seconds"]
        out[f"recovery_{name}"] = {
            "target": f"{name.replace('_', ' ')} SIGKILL -> final < 60 s, 0 lost, 0 duplicated",
            "value": f"max {worst} s over {part['kills']} kills, {part['lost']} lost, "
            f"{part['duplicated']} duplicated",
            "met": worst is not None and worst < 60 and not part["lost"] and not part["duplicated"],
        }
    return out


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name in ("apply_worker", "redis"):
        part = result[name]
        s = part["seconds"]
        rows.append(
            (
                f"recovery after SIGKILL of the {name.replace('_', ' ')} ({part['kills']} kills)",
                f"p50 {s.get('p50')} s, max {part['max_seconds']} s, {part['lost']} lost, "
                f"{part['duplicated']} duplicated",
            )
        )
    return rows
