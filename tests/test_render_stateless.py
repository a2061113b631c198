"""The seed's stateless pattern: what it adds to pod templates, and that it adds it once."""

from __future__ import annotations

import copy
import textwrap

import pytest

from syncworker.kube.labels import COMMIT_ANNOTATION, MANAGED_BY_LABEL, SERVICE_LABEL
from syncworker.render import RenderOptions, render_bundle
from syncworker.render.mutate import mutate_object
from syncworker.sources.base import SourceFile

BASE = "deploy/web"
OPTIONS = RenderOptions(
    service="web",
    base_dir=BASE,
    commit="c0ffee",
    namespace="team",
    stateless=True,
    download_base_url="https://files.example.com/",
)

URL_ENV = {
    "name": "DOWNLOAD_BASE_URL",
    "valueFrom": {"configMapKeyRef": {"name": "web-gitops", "key": "download_base_url"}},
}
FETCH = {
    "name": "gitops-fetch",
    "image": "busybox:1.36",
    "command": [
        "/bin/sh",
        "-c",
        'wget -qO /app/init.sh "$DOWNLOAD_BASE_URL/scripts/web/init.sh" && '
        'wget -qO- "$DOWNLOAD_BASE_URL/apps/web/app.tar.gz" | tar -xz -C /app && '
        "chmod +x /app/init.sh",
    ],
    "volumeMounts": [{"name": "gitops-app", "mountPath": "/app"}],
    "env": [URL_ENV],
}
VOLUMES = [
    {"name": "gitops-app", "emptyDir": {}},
    {"name": "gitops-config", "configMap": {"name": "web-config", "optional": True}},
    {"name": "gitops-secret", "secret": {"secretName": "web-secret", "optional": True}},
]
MOUNTS = [
    {"name": "gitops-app", "mountPath": "/app"},
    {"name": "gitops-config", "mountPath": "/etc/config", "readOnly": True},
    {"name": "gitops-secret", "mountPath": "/etc/secret", "readOnly": True},
]

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: python:3.10-slim}
      - name: sidecar
        image: envoy
        command: [envoy]
        env: [{name: LEVEL, value: info}]
"""


def src(path: str, text: str) -> SourceFile:
    return SourceFile(f"{BASE}/{path}", textwrap.dedent(text).encode())


def pod_spec(obj: dict) -> dict:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def test_the_pattern_adds_exactly_the_volumes_mounts_env_init_container_and_command():
    bundle = render_bundle([src("app.yaml", DEPLOYMENT)], OPTIONS)
    deployment = next(o for o in bundle.objects if o["kind"] == "Deployment")
    assert pod_spec(deployment) == {
        "containers": [
            {
                "name": "web",
                "image": "python:3.10-slim",
                "command": ["/bin/sh", "/app/init.sh"],
                "volumeMounts": MOUNTS,
                "env": [URL_ENV],
            },
            {
                "name": "sidecar",
                "image": "envoy",
                "command": ["envoy"],
                "volumeMounts": MOUNTS,
                "env": [{"name": "LEVEL", "value": "info"}, URL_ENV],
            },
        ],
        "initContainers": [FETCH],
        "volumes": VOLUMES,
    }


def test_the_bundle_carries_the_download_url_in_the_service_namespace():
    bundle = render_bundle([src("app.yaml", DEPLOYMENT)], OPTIONS)
    assert [str(ref) for ref in bundle.refs] == ["ConfigMap team/web-gitops", "Deployment team/web"]
    config = bundle.objects[0]
    assert config["data"] == {"download_base_url": "https://files.example.com"}
    assert config["metadata"]["labels"][MANAGED_BY_LABEL] == "simple-gitops"
    assert config["metadata"]["labels"][SERVICE_LABEL] == "web"
    assert COMMIT_ANNOTATION not in (config["metadata"].get("annotations") or {})


def test_a_workload_in_another_namespace_gets_the_download_url_there_too():
    elsewhere = DEPLOYMENT.replace("metadata: {name: web}", "metadata: {name: web, namespace: x}")
    bundle = render_bundle([src("app.yaml", elsewhere)], OPTIONS)
    assert [str(ref) for ref in bundle.refs] == [
        "ConfigMap team/web-gitops",
        "ConfigMap x/web-gitops",
        "Deployment x/web",
    ]


@pytest.mark.parametrize(
    ("api_version", "kind", "spec"),
    [
        ("apps/v1", "StatefulSet", "{template: {spec: {containers: [{name: a, image: i}]}}}"),
        ("apps/v1", "DaemonSet", "{template: {spec: {containers: [{name: a, image: i}]}}}"),
        ("batch/v1", "Job", "{template: {spec: {containers: [{name: a, image: i}]}}}"),
        (
            "batch/v1",
            "CronJob",
            "{jobTemplate: {spec: {template: {spec: {containers: [{name: a, image: i}]}}}}}",
        ),
    ],
)
def test_every_kind_of_workload_gets_the_pattern(api_version, kind, spec):
    text = f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: w}}\nspec: {spec}\n"
    bundle = render_bundle([src("w.yaml", text)], OPTIONS)
    workload = next(o for o in bundle.objects if o["kind"] == kind)
    assert pod_spec(workload) == {
        "containers": [
            {
                "name": "a",
                "image": "i",
                "command": ["/bin/sh", "/app/init.sh"],
                "volumeMounts": MOUNTS,
                "env": [URL_ENV],
            }
        ],
        "initContainers": [FETCH],
        "volumes": VOLUMES,
    }


def test_other_objects_and_look_alike_custom_resources_are_left_alone():
    text = """
    apiVersion: example.com/v1
    kind: Deployment
    metadata: {name: custom}
    spec: {template: {spec: {containers: [{name: a}]}}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: bare}
    spec: {containers: [{name: a, image: i}]}
    """
    bundle = render_bundle([src("other.yaml", text)], OPTIONS)
    custom = next(o for o in bundle.objects if o["kind"] == "Deployment")
    assert custom["spec"] == {"template": {"spec": {"containers": [{"name": "a"}]}}}
    pod = next(o for o in bundle.objects if o["kind"] == "Pod")
    assert pod["spec"] == {"containers": [{"name": "a", "image": "i"}]}


def test_without_the_option_pod_templates_are_untouched():
    plain = RenderOptions(service="web", base_dir=BASE, commit="c0ffee", namespace="team")
    bundle = render_bundle([src("app.yaml", DEPLOYMENT)], plain)
    assert [str(ref) for ref in bundle.refs] == ["Deployment team/web"]
    assert "initContainers" not in pod_spec(bundle.objects[0])


def test_mutating_twice_is_mutating_once():
    bundle = render_bundle([src("app.yaml", DEPLOYMENT)], OPTIONS)
    once = next(o for o in bundle.objects if o["kind"] == "Deployment")
    assert mutate_object(copy.deepcopy(once), OPTIONS, {}) == once


def test_what_the_manifest_already_has_is_kept_and_not_added_again():
    text = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      template:
        spec:
          volumes: [{name: gitops-config, configMap: {name: mine}}]
          initContainers:
          - {name: migrate, image: tool}
          containers:
          - name: web
            image: app
            volumeMounts: [{name: data, mountPath: /etc/config}]
            env: [{name: DOWNLOAD_BASE_URL, value: "http://mirror"}]
    """
    bundle = render_bundle([src("app.yaml", text)], OPTIONS)
    spec = pod_spec(next(o for o in bundle.objects if o["kind"] == "Deployment"))
    assert spec["volumes"] == [
        {"name": "gitops-config", "configMap": {"name": "mine"}},
        VOLUMES[0],
        VOLUMES[2],
    ]
    [container] = spec["containers"]
    assert container["volumeMounts"] == [
        {"name": "data", "mountPath": "/etc/config"},
        MOUNTS[0],
        MOUNTS[2],
    ]
    assert container["env"] == [{"name": "DOWNLOAD_BASE_URL", "value": "http://mirror"}]
    assert spec["initContainers"] == [
        FETCH,
        {"name": "migrate", "image": "tool", "env": [URL_ENV]},
    ]


def test_the_input_objects_are_not_changed():
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "i"}]}}},
    }
    before = copy.deepcopy(obj)
    mutated = mutate_object(obj, OPTIONS, {})
    assert obj == before
    assert mutated != before
