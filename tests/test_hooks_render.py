"""Hooks before any cluster: the annotations (Argo CD's and ours), what render accepts and
refuses, how a bundle splits into objects to apply and hooks, and how a hook's end is read
from its Job or Pod."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from syncworker.kube import hooks as vocabulary
from syncworker.pipeline.hooks import FAILED, RUNNING, SUCCEEDED, outcome, plan_of, state
from syncworker.render import RenderError, RenderOptions, render_service
from syncworker.render.bundle import make_bundle
from tests.support.repo_files import disk_reader


def job(name: str = "", *, generate: str = "", **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"annotations": dict(annotations)} if annotations else {}
    if name:
        meta["name"] = name
    if generate:
        meta["generateName"] = generate
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "registry.invalid/db:1"}],
                }
            },
        },
    }


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


def render(*objects: dict[str, Any]):
    files = {"svc/app.yaml": yaml.safe_dump_all(objects).encode()}
    options = RenderOptions(service="app", base_dir="svc", commit="c0ffee", namespace="shop")
    return render_service(disk_reader(files), options).bundle


def render_errors(*objects: dict[str, Any]) -> list[str]:
    with pytest.raises(RenderError) as caught:
        render(*objects)
    return [str(e) for e in caught.value.errors]


ARGO = vocabulary.ARGO_HOOK_ANNOTATION
OURS = vocabulary.HOOK_ANNOTATION
POLICY = vocabulary.ARGO_DELETE_POLICY_ANNOTATION


def test_phases_come_from_argo_cds_annotation_or_ours_which_wins():
    assert vocabulary.phases_of(job("a", **{ARGO: "PreSync"})) == ("PreSync",)
    assert vocabulary.phases_of(job("a", **{ARGO: "PostSync, SyncFail"})) == (
        "PostSync",
        "SyncFail",
    )
    assert vocabulary.phases_of(job("a", **{ARGO: "PreSync", OURS: "PostSync"})) == ("PostSync",)
    assert vocabulary.phases_of(cm("plain")) == ()
    assert vocabulary.phases_of(job("a", **{ARGO: "Skip"})) == ("Skip",)


def test_delete_policy_defaults_to_before_hook_creation():
    assert vocabulary.delete_policies_of(job("a", **{ARGO: "Sync"})) == ("BeforeHookCreation",)
    both = job("a", **{ARGO: "Sync", POLICY: "HookSucceeded,HookFailed"})
    assert vocabulary.delete_policies_of(both) == ("HookSucceeded", "HookFailed")


def test_a_generate_name_hook_renders_and_stays_out_of_the_inventory():
    bundle = render(cm("settings"), job(generate="db-migrate-", **{ARGO: "PreSync"}))
    assert [str(ref) for ref in bundle.refs] == ["ConfigMap shop/settings"]
    (hook,) = [o for o in bundle.objects if o["kind"] == "Job"]
    assert hook["metadata"]["generateName"] == "db-migrate-"
    assert hook["metadata"]["namespace"] == "shop"  # mutated like every object


def test_generate_name_without_a_hook_annotation_is_still_refused_naming_the_field():
    (error,) = render_errors(job(generate="db-migrate-"))
    assert "document 1: metadata.generateName: 'db-migrate-' without metadata.name" in error
    assert ARGO in error


def test_a_bad_hook_phase_or_delete_policy_is_a_render_error_naming_the_annotation():
    errors = render_errors(
        job("a", **{ARGO: "PreSnyc"}), job("b", **{ARGO: "Sync", POLICY: "Never"})
    )
    assert any(f"metadata.annotations[{ARGO}]: 'PreSnyc' is not a hook phase" in e for e in errors)
    assert any(f"metadata.annotations[{POLICY}]: 'Never' is not a hook delete" in e for e in errors)


def test_two_hooks_with_the_same_generate_name_are_a_duplicate():
    (error,) = render_errors(
        job(generate="smoke-", **{ARGO: "PostSync"}), job(generate="smoke-", **{ARGO: "Sync"})
    )
    assert "Job shop/smoke-*: also defined at" in error


def test_a_bundle_splits_into_objects_to_apply_and_hooks_by_phase_skip_in_neither():
    bundle = make_bundle(
        [
            cm("a"),
            job(generate="migrate-", **{ARGO: "PreSync"}),
            job("smoke", **{OURS: "PostSync,SyncFail"}),
            cm("skipped") | {"metadata": {"name": "skipped", "annotations": {ARGO: "Skip"}}},
        ]
    )
    plan = plan_of(bundle.yaml)
    assert [o["metadata"]["name"] for o in yaml.safe_load_all(plan.yaml)] == ["a"]
    assert [o["metadata"]["generateName"] for o in plan.of("PreSync")] == ["migrate-"]
    assert [o["metadata"]["name"] for o in plan.of("PostSync")] == ["smoke"]
    assert [o["metadata"]["name"] for o in plan.of("SyncFail")] == ["smoke"]
    assert plan.of("Sync") == []


def test_a_bundle_without_hooks_is_handed_on_untouched():
    text = make_bundle([cm("a"), cm("b")]).yaml
    assert plan_of(text).yaml is text


def with_conditions(obj: dict[str, Any], *conditions: dict[str, str]) -> dict[str, Any]:
    return obj | {"status": {"startTime": "2026-01-01T00:00:00Z", "conditions": list(conditions)}}


def test_a_job_hook_ends_by_its_complete_or_failed_condition_not_by_running():
    running = with_conditions(job("a"))
    assert outcome(running)[0] == RUNNING  # kstatus calls a running Job current: not done
    done = with_conditions(job("a"), {"type": "Complete", "status": "True"})
    assert outcome(done)[0] == SUCCEEDED
    failed = with_conditions(
        job("a"),
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"},
    )
    result, why = outcome(failed)
    assert result == FAILED and "BackoffLimitExceeded" in why
    assert outcome(None) == (FAILED, "not found: deleted before it finished")


def test_a_pod_hook_ends_by_its_phase():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert outcome(pod | {"status": {"phase": "Succeeded"}})[0] == SUCCEEDED
    assert outcome(pod | {"status": {"phase": "Failed"}})[0] == FAILED
    assert outcome(pod | {"status": {"phase": "Running"}})[0] == RUNNING


def test_a_phase_fails_when_any_hook_failed_and_succeeds_only_when_all_did():
    def rec(phase: str, result: str) -> dict[str, str]:
        return {"phase": phase, "result": result}

    assert state([rec("PreSync", SUCCEEDED), rec("PreSync", RUNNING)], "PreSync") == RUNNING
    assert state([rec("PreSync", FAILED), rec("PreSync", RUNNING)], "PreSync") == FAILED
    assert state([rec("PreSync", SUCCEEDED), rec("Sync", FAILED)], "PreSync") == SUCCEEDED
