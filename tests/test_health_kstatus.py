"""kstatus' rules on object shapes as the apiserver and its controllers write them."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from syncworker.health import Health, assess, summarize, worst
from syncworker.kube.refs import ObjectRef

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-12-01T11:59:00Z",
    }


def deployment(**status: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "web", "generation": 2},
        "spec": {"replicas": 3, "progressDeadlineSeconds": 600},
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                cond("Available", "True", "MinimumReplicasAvailable"),
                cond("Progressing", "True", "NewReplicaSetAvailable"),
            ],
        },
    }
    base["status"].update(status)
    return base


def test_a_rolled_out_deployment_is_healthy() -> None:
    assert assess(deployment()) == Health("healthy", "3 of 3 replicas available")


def test_a_deployment_past_its_progress_deadline_is_degraded_and_says_so() -> None:
    obj = deployment(
        readyReplicas=1,
        availableReplicas=1,
        conditions=[
            cond("Available", "False", "MinimumReplicasUnavailable"),
            cond(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                'ReplicaSet "api-7f" has timed out progressing.',
            ),
        ],
    )
    health = assess(obj)
    assert health.status == "degraded"
    assert health.message == "1 of 3 replicas available; ProgressDeadlineExceeded"


def test_a_deployment_still_rolling_out_is_progressing() -> None:
    obj = deployment(
        availableReplicas=1,
        readyReplicas=1,
        conditions=[
            cond("Available", "False", "MinimumReplicasUnavailable"),
            cond("Progressing", "True", "ReplicaSetUpdated"),
        ],
    )
    assert assess(obj) == Health("progressing", "1 of 3 replicas available")


def test_an_unobserved_generation_is_progressing_even_if_the_counts_look_done() -> None:
    obj = deployment(observedGeneration=1)
    assert assess(obj).status == "progressing"
    assert "generation 2" in assess(obj).message


def test_a_deployment_without_the_available_condition_is_not_yet_healthy() -> None:
    obj = deployment(conditions=[cond("Progressing", "True", "NewReplicaSetAvailable")])
    assert assess(obj).status == "progressing"


def test_a_deployment_being_deleted_is_progressing() -> None:
    obj = deployment()
    obj["metadata"]["deletionTimestamp"] = "2026-12-01T11:59:30Z"
    assert assess(obj).status == "progressing"


def test_a_missing_object_is_missing() -> None:
    assert assess(None).status == "missing"


def test_stalled_and_reconciling_conditions_decide_for_any_kind() -> None:
    custom: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [cond("Stalled", "True", "Bad", "spec is invalid")],
        },
    }
    assert assess(custom) == Health("degraded", "spec is invalid")
    custom["status"]["conditions"] = [cond("Reconciling", "True", "Working", "halfway")]
    assert assess(custom) == Health("progressing", "halfway")
    custom["status"]["conditions"] = [cond("Ready", "False", "Waiting", "waiting for db")]
    assert assess(custom).status == "progressing"
    custom["status"]["conditions"] = [cond("Ready", "True")]
    assert assess(custom).status == "healthy"


def test_a_configmap_is_always_healthy() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    assert assess(cm).status == "healthy"


def statefulset(**status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "web", "generation": 1},
        "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "readyReplicas": 2,
            "currentReplicas": 2,
            "updatedReplicas": 2,
            "currentRevision": "db-5d",
            "updateRevision": "db-5d",
        },
    }
    obj["status"].update(status)
    return obj


def test_statefulset_rules() -> None:
    assert assess(statefulset()).status == "healthy"
    assert assess(statefulset(readyReplicas=1)) == Health("progressing", "1 of 2 replicas ready")
    assert assess(statefulset(updateRevision="db-6a")).status == "progressing"
    on_delete = statefulset(readyReplicas=0)
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert assess(on_delete).status == "healthy"


def daemonset(**status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system", "generation": 1},
        "spec": {},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberAvailable": 3,
            "numberReady": 3,
        },
    }
    obj["status"].update(status)
    return obj


def test_daemonset_rules() -> None:
    assert assess(daemonset()).status == "healthy"
    assert assess(daemonset(numberAvailable=2)) == Health("progressing", "2 of 3 pods available")
    unobserved = daemonset()
    del unobserved["status"]["observedGeneration"]
    assert assess(unobserved).status == "progressing"


def test_replicaset_rules() -> None:
    rs: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "api-7f", "namespace": "web", "generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "fullyLabeledReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }
    assert assess(rs).status == "healthy"
    failing = copy.deepcopy(rs)
    failing["status"]["conditions"] = [
        cond("ReplicaFailure", "True", "FailedCreate", "quota exceeded")
    ]
    assert assess(failing) == Health("progressing", "replica failure; quota exceeded")


def job(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate-x7k2p", "namespace": "web", "generation": 1},
        "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 0},
        "status": {"startTime": "2026-12-01T11:59:00Z", **status},
    }
    if conditions:
        obj["status"]["conditions"] = list(conditions)
    return obj


def test_job_rules() -> None:
    assert assess(job(cond("Complete", "True"), succeeded=1)).status == "healthy"
    failed = assess(
        job(
            cond(
                "Failed",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ),
            failed=1,
        )
    )
    assert failed == Health(
        "degraded", "failed: 1 failed; Job has reached the specified backoff limit"
    )
    assert assess(job(active=1)).status == "healthy"  # running counts as current, as in kstatus
    unstarted = job()
    del unstarted["status"]["startTime"]
    assert assess(unstarted).status == "progressing"


def pod(
    phase: str, *conditions: dict[str, Any], created: datetime = NOW - timedelta(minutes=1)
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "web",
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "status": {"phase": phase, "conditions": list(conditions)},
    }


def test_pod_rules() -> None:
    assert assess(pod("Running", cond("Ready", "True")), now=NOW).status == "healthy"
    assert assess(pod("Running", cond("Ready", "False")), now=NOW).status == "progressing"
    looping = pod("Running", cond("Ready", "False"))
    looping["status"]["containerStatuses"] = [
        {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    ]
    assert assess(looping, now=NOW) == Health("degraded", "containers in CrashLoopBackOff: app")
    unschedulable = cond("PodScheduled", "False", "Unschedulable", "0/3 nodes are available")
    assert assess(pod("Pending", unschedulable), now=NOW).status == "degraded"
    assert (
        assess(pod("Pending", unschedulable, created=NOW - timedelta(seconds=5)), now=NOW).status
        == "progressing"
    )
    assert assess(pod("Succeeded"), now=NOW).status == "healthy"


def test_pvc_service_and_crd_rules() -> None:
    pvc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "d"},
        "status": {"phase": "Pending"},
    }
    assert assess(pvc).status == "progressing"
    pvc["status"]["phase"] = "Bound"
    assert assess(pvc).status == "healthy"
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"type": "LoadBalancer"},
    }
    assert assess(svc).status == "progressing"
    svc["spec"]["clusterIP"] = "10.0.0.7"
    assert assess(svc).status == "healthy"
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com", "generation": 1},
        "status": {
            "conditions": [
                cond("NamesAccepted", "True"),
                cond("Established", "False", "Installing"),
            ]
        },
    }
    assert assess(crd).status == "progressing"
    crd["status"]["conditions"][1] = cond("Established", "True", "InitialNamesAccepted")
    assert assess(crd).status == "healthy"
    crd["status"]["conditions"][0] = cond("NamesAccepted", "False", "NameConflict", "plural in use")
    assert assess(crd).status == "degraded"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "healthy"),
        (["healthy", "progressing"], "progressing"),
        (["missing", "degraded", "progressing"], "degraded"),
    ],
)
def test_the_worst_health_wins(statuses: list[str], expected: str) -> None:
    assert worst(statuses) == expected


def test_the_summary_names_each_unhealthy_object() -> None:
    ok = ObjectRef("v1", "ConfigMap", "web", "c")
    bad = ObjectRef("apps/v1", "Deployment", "web", "api")
    summary = summarize(
        [
            (ok, Health("healthy")),
            (bad, Health("degraded", "1 of 3 replicas available; ProgressDeadlineExceeded")),
        ]
    )
    assert summary == Health(
        "degraded", "Deployment web/api: 1 of 3 replicas available; ProgressDeadlineExceeded"
    )
