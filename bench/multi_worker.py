"""11. Workers on several machines: two fetch and two apply workers, as on two hosts.

Four worker processes with node names of two machines (``fetch1@hostA``,
``apply1@hostA``, ``fetch2@hostB``, ``apply2@hostB``), the command lines and concurrency
of scripts/run, each "machine" with a workspace of its own (``GITOPS_VAR_DIR``), all on
one Redis and one PostgreSQL. Two clusters (two namespaces of one kube-apiserver), the
services alternating between them; ``wait`` off. No beat: the recovery sweep, which
would mend a lost message, is not running, so a loss shows.

1. Cold sync: 1,000 services x 10 objects (quick: 100) in one Git repository, one
   poll; the clock stops when every deployment is final.
2. A stream of pushes: 30 commits (quick: 10), one a second, each changing the
   ConfigMap revision of 5 random services and followed by a poll (as a webhook does;
   polls of one repository run at once on both fetch workers). Then quiet until every
   deployment is final.

Checked afterwards, for both phases together:

- *lost*: a service whose live ConfigMap (read back from the apiserver) does not carry
  the revision of the last commit that changed it, or whose newest deployment did not
  succeed, plus deployments left unfinished;
- *duplicated*: a (service, commit) with more than one deployment row, plus deployments
  applied more than once (each apply logs ``applying deployment N``; counted over both
  apply workers' logs);
- *order violations*: two applies to one cluster that overlap in time (started before
  the previous one on that cluster finished), and a deployment that started applying
  before an older deployment of its service that also applied.

Targets: 0 lost, 0 duplicated, 0 order violations.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections import Counter, defaultdict
from typing import Any

from bench.clusters import FINAL, final_count, statuses
from bench.common import Context, mixed_objects, reset_state, say, start_kube, to_yaml
from tests.support.gitserver import GitHttpServer, WorkingCopy
from tests.support.procs import wait_until
from tests.support.stack import WORKERS, Stack
from tests.support.workers import PLAIN, WorkerProcess

HOSTS = ("hostA", "hostB")
NAMESPACES = ("mw-a", "mw-b")
CHANGED_PER_PUSH = 5


def files_of(index: int, rev: int) -> dict[str, str | bytes | None]:
    name = f"svc-{index:04d}"
    return {f"services/{name}/objects.yaml": to_yaml(mixed_objects(10, name, rev=rev))}


def node(stack: Stack, kind: str, number: int, host: str) -> WorkerProcess:
    """A worker as scripts/run starts it, named as on ``host``."""
    from gitops_site.celery import app

    queues, concurrency = WORKERS[kind]
    name = f"{kind}{number}@{host}"
    env = {**stack.env, "GITOPS_VAR_DIR": str(stack.logs.parent / host) if stack.logs else ""}
    argv = [*PLAIN, "-A", "gitops_site", "worker", "-n", name, "-Q", queues,
            "-c", str(concurrency), "-l", "INFO"]  # fmt: skip
    saved, stack.env = stack.env, env
    try:
        worker = stack.process(f"{kind}{number}-{host}", argv)
    finally:
        stack.env = saved
    worker.name = name

    def answers() -> bool:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{worker.tail()}")
        return bool(app.control.ping(destination=[name], timeout=0.5))

    wait_until(answers, timeout=120, what=name)
    return worker


def run(ctx: Context) -> dict[str, Any]:
    from django.db import connections

    from syncworker.models import Cluster, Repository, Service
    from syncworker.pipeline import handoff

    reset_state(ctx)
    count, pushes = ctx.count(1000, 100), ctx.count(30, 10)
    rng = random.Random(17)
    revisions = dict.fromkeys(range(count), 0)
    with ctx.stack() as stack:
        env, kube = start_kube(ctx, stack)
        for namespace in NAMESPACES:
            kube.create_namespace(namespace)
        git = stack.start(GitHttpServer())
        copy = WorkingCopy(git.create_repo("multi"))
        stack.callback(copy.cleanup)
        files: dict[str, str | bytes | None] = {}
        for i in range(count):
            files.update(files_of(i, 0))
        copy.commit(files, message=f"{count} services")
        clusters = [
            Cluster.objects.create(
                name=f"mw-{n}", applyer="kubernetes", settings={"kubeconfig": str(env.kubeconfig)}
            )
            for n in "ab"
        ]
        repo = Repository.objects.create(key="multi", provider="git", url=copy.url)
        Service.objects.bulk_create(
            Service(
                name=f"svc-{i:04d}",
                repository=repo,
                k8s_yaml_dir=f"services/svc-{i:04d}",
                namespace=NAMESPACES[i % 2],
                cluster=clusters[i % 2],
                wait=False,
            )
            for i in range(count)
        )
        connections.close_all()
        workers = [node(stack, kind, n + 1, host) for n, host in enumerate(HOSTS)
                   for kind in ("fetch", "apply")]  # fmt: skip

        say(f"multi_worker: cold sync of {count} services")
        started = time.perf_counter()
        handoff.poll(repo.pk, trigger="manual")
        wait_until(lambda: final_count() >= count, timeout=3600, what="cold sync", interval=0.5)
        cold = time.perf_counter() - started
        say(f"multi_worker: cold sync done in {cold:.1f}s; {pushes} pushes")

        started = time.perf_counter()
        changes = 0
        for push in range(pushes):
            chosen = rng.sample(range(count), CHANGED_PER_PUSH)
            changed: dict[str, str | bytes | None] = {}
            for i in chosen:
                revisions[i] = push + 1
                changed.update(files_of(i, push + 1))
            copy.commit(changed, message=f"push {push + 1}")
            handoff.poll(repo.pk, trigger="webhook")
            changes += len(chosen)
            time.sleep(1.0)
        wait_until(_quiet, timeout=900, what="the stream to settle", interval=0.5)
        stream = time.perf_counter() - started
        live = _live_revisions(kube)
        logs = {w.name: w.log.read_text(errors="replace") for w in workers}
    checked = check(revisions, live, logs)
    return {
        "services": count,
        "pushes": pushes,
        "changes": changes,
        "nodes": sorted(logs),
        "cold_sync_s": round(cold, 1),
        "stream_s": round(stream, 1),
        "statuses": statuses(),
        **checked,
    }


def _quiet() -> bool:
    from syncworker.models import Deployment

    return not Deployment.objects.exclude(status__in=FINAL).exists()


def _live_revisions(kube: Any) -> dict[str, str]:
    """The revision each service's first ConfigMap carries on the cluster."""
    found: dict[str, str] = {}
    for namespace in NAMESPACES:
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        answer = kube.get(path, labelSelector="simple-gitops.io/service").json()
        for item in answer.get("items", []):
            name = item["metadata"]["name"]
            if name.endswith("-0000"):
                found[name.removesuffix("-0000")] = item.get("data", {}).get("revision", "")
    return found


STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
APPLY_START = re.compile(STAMP + r".*?applying deployment (\d+) to cluster (\S+)")
APPLY_END = re.compile(STAMP + r".*?deployment (\d+) on cluster (\S+): ")


def check(revisions: dict[int, int], live: dict[str, str], logs: dict[str, str]) -> dict[str, Any]:
    from syncworker.models import Deployment

    rows = list(
        Deployment.objects.order_by("pk").values_list(
            "pk", "service__name", "commit_sha", "status", "reason", "error", "started_at"
        )
    )
    newest: dict[str, tuple[str, str]] = {}
    for _, name, _, status, reason, *_ in rows:
        newest[name] = (status, reason)
    failed = [(pk, name, reason, error[:160]) for pk, name, _, status, reason, error, _ in rows
              if status == "failed"]  # fmt: skip
    # Lost: the last change of a service reached no final state, or was recorded as applied
    # while the cluster lacks it. A failure with its reason is recorded, not lost.
    lost = []
    for i, rev in revisions.items():
        name = f"svc-{i:04d}"
        status = newest.get(name, ("", ""))[0]
        if status not in ("succeeded", "failed") or (
            status == "succeeded" and live.get(name) != str(rev)
        ):
            lost.append(name)
    rows_per_change = Counter((name, sha) for _, name, sha, *_ in rows)
    duplicate_rows = sum(n - 1 for n in rows_per_change.values() if n > 1)
    spans = apply_spans(logs)
    applied = Counter(pk for pk, _, _, _ in spans)
    succeeded = {pk for pk, _, _, status, *_ in rows if status == "succeeded"}
    # Applied twice: more than one attempt that did not end in a transient error.
    applied_twice = sorted(pk for pk, n in applied.items() if n > 1 and pk in succeeded)
    by_worker = {name: len(APPLY_START.findall(text)) for name, text in logs.items()
                 if "apply" in name}  # fmt: skip
    violations = _order_violations(rows, spans)
    if succeeded and not spans:
        # Without the workers' apply log lines the applied-twice and overlap checks would
        # pass vacuously (they did once, when the line was lost in a merge).
        violations.append("no apply attempt found in the apply workers' logs")
    return {
        "lost": len(lost),
        "lost_examples": lost[:10],
        "failed": [list(f) for f in failed[:10]],
        "duplicated": duplicate_rows + len(applied_twice),
        "duplicated_examples": applied_twice[:10],
        "applies_by_worker": by_worker,
        "apply_attempts_timed": len(spans),
        "order_violations": len(violations),
        "order_examples": violations[:10],
    }


def apply_spans(logs: dict[str, str]) -> list[tuple[int, str, str, str]]:
    """(deployment, cluster, start, end) of every apply attempt, from the apply workers'
    log lines: each attempt starts at ``applying deployment N`` and ends at the next
    ``deployment N on cluster C: <outcome>`` of the same log."""
    spans = []
    for text in logs.values():
        open_: dict[int, tuple[str, str]] = {}
        for line in text.splitlines():
            if started := APPLY_START.search(line):
                open_[int(started[2])] = (started[3], started[1])
            elif (ended := APPLY_END.search(line)) and int(ended[2]) in open_:
                cluster, start = open_.pop(int(ended[2]))
                spans.append((int(ended[2]), cluster, start, ended[1]))
    return spans


def _order_violations(
    rows: list[tuple[Any, ...]], spans: list[tuple[int, str, str, str]]
) -> list[str]:
    """Two apply attempts on one cluster overlapping in time; a service's deployment
    that started applying before an older one of the same service."""
    found = []
    per_cluster: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for pk, cluster, start, end in spans:
        per_cluster[cluster].append((start, end, pk))
    for cluster, attempts in per_cluster.items():
        attempts.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(attempts):
            if start < end:
                found.append(f"{cluster}: {second} started before {first} ended")
    per_service: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for pk, name, _sha, _status, _reason, _error, started in rows:
        if started is not None:
            per_service[name].append((pk, started))  # rows are in id order
    for name, starts in per_service.items():
        for (older, at), (newer, newer_at) in itertools.pairwise(starts):
            if newer_at < at:
                found.append(f"{name}: {newer} started before the older {older}")
    return found


def targets(result: dict[str, Any]) -> dict[str, Any]:
    value = (
        f"lost {result['lost']}, duplicated {result['duplicated']}, order violations "
        f"{result['order_violations']} ({result['services']} services cold, then "
        f"{result['pushes']} pushes; 2 fetch + 2 apply workers on 2 node names)"
    )
    return {
        "multi_worker": {
            "target": "0 deployments lost or duplicated, 0 order violations",
            "value": value,
            "met": result["lost"] == 0
            and result["duplicated"] == 0
            and result["order_violations"] == 0,
        }
    }


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (
            f"cold sync, {result['services']} services x 10 objects, 2 fetch + 2 apply workers",
            f"{result['cold_sync_s']:.1f} s wall",
        ),
        (
            f"  then {result['pushes']} pushes of {CHANGED_PER_PUSH} services, 1 a second",
            f"settled {result['stream_s']:.1f} s after the first; statuses {result['statuses']}"
            + (f"; failed: {result['failed']}" if result["failed"] else ""),
        ),
        (
            "  lost / duplicated / order violations",
            f"{result['lost']} / {result['duplicated']} / {result['order_violations']}"
            + (f" (lost e.g. {result['lost_examples']})" if result["lost"] else "")
            + (
                f" (applied twice e.g. {result['duplicated_examples']})"
                if result["duplicated"]
                else ""
            ),
        ),
        (
            "  applies per apply worker",
            ", ".join(f"{k} {v}" for k, v in sorted(result["applies_by_worker"].items()))
            + f"; {result['apply_attempts_timed']} attempts timed from the logs",
        ),
    ]
