"""applyer_for() and the manifest ordering every applyer shares."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from syncworker.applyers import REGISTRY, ApplyerSettingsError, applyer_for
from syncworker.applyers.file import FileApplyer
from syncworker.applyers.kubectl import KubectlApplyer, is_transient
from syncworker.applyers.kubernetes import KubernetesApplyer
from syncworker.applyers.manifests import first_service, load_objects, sort_objects
from syncworker.applyers.nokube import DEFAULT_BIN_PATH, NokubeApplyer
from syncworker.models import Cluster


def cluster(applyer: str, settings: dict[str, object] | None = None) -> Cluster:
    return Cluster(name="prod-eu", applyer=applyer, settings=settings or {})


def test_every_applyer_choice_of_a_cluster_has_a_builder() -> None:
    assert set(REGISTRY) == set(Cluster.Applyer.values)


def test_kubernetes_applyer_is_built_from_the_cluster_settings() -> None:
    applyer = applyer_for(
        cluster("kubernetes", {"kubeconfig": "~/kc", "context": "ops", "max_workers": 4})
    )

    assert isinstance(applyer, KubernetesApplyer)
    assert applyer.kubeconfig == str(Path.home() / "kc")
    assert (applyer.context, applyer.max_workers) == ("ops", 4)
    assert applyer.verify_unchanged is True


def test_kubernetes_applyer_can_be_told_to_patch_unchanged_objects_too() -> None:
    applyer = applyer_for(cluster("kubernetes", {"verify_unchanged": False}))

    assert isinstance(applyer, KubernetesApplyer)
    assert applyer.verify_unchanged is False


def test_kubectl_applyer_defaults_to_kubectl_on_path() -> None:
    applyer = applyer_for(cluster("kubectl", {"kubeconfig": "/etc/kc"}))

    assert isinstance(applyer, KubectlApplyer)
    assert (applyer.kubectl, applyer.kubeconfig, applyer.context) == ("kubectl", "/etc/kc", None)


def test_nokube_applyer_takes_the_cluster_name_unless_settings_name_one() -> None:
    url = "https://example.com/nokube"
    applyer = applyer_for(cluster("nokube", {"nokube_download_url": url}))
    named = applyer_for(cluster("nokube", {"nokube_download_url": url, "cluster_name": "edge"}))

    assert isinstance(applyer, NokubeApplyer) and isinstance(named, NokubeApplyer)
    assert (applyer.cluster_name, applyer.download_url) == ("prod-eu", url)
    assert str(applyer.bin_path) == DEFAULT_BIN_PATH
    assert named.cluster_name == "edge"


def test_file_applyer_writes_to_the_render_dir_unless_told_otherwise(
    settings: Any, tmp_path: Path
) -> None:
    applyer = applyer_for(cluster("file", {"directory": str(tmp_path)}))

    assert isinstance(applyer, FileApplyer)
    assert applyer.directory == tmp_path
    default = applyer_for(cluster("file"))
    assert isinstance(default, FileApplyer)
    assert default.directory == Path(settings.GITOPS["RENDER_DIR"])


@pytest.mark.parametrize(
    ("applyer", "settings", "message"),
    [
        ("kubernetes", {"max_workers": "eight"}, "'max_workers' must be a number"),
        ("kubernetes", {"max_workers": 0}, "'max_workers' must be a number of at least 1"),
        ("kubernetes", {"verify_unchanged": "no"}, "'verify_unchanged' must be true or false"),
        ("kubernetes", {"verify_unchanged": 0}, "'verify_unchanged' must be true or false"),
        ("kubernetes", {"verify_unchaged": False}, "unknown setting(s) 'verify_unchaged'"),
        ("kubectl", {"kubeconfig": 42}, "'kubeconfig' must be a string"),
        ("file", {"dir": "/tmp/x"}, "unknown setting(s) 'dir'"),
        ("helm", {}, "unknown applyer 'helm'"),
    ],
)
def test_bad_settings_fail_with_a_message_naming_cluster_and_setting(
    applyer: str, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ApplyerSettingsError) as caught:
        applyer_for(cluster(applyer, settings))

    assert "'prod-eu'" in str(caught.value)
    assert message in str(caught.value)


PHASES = [
    ("v1", "Namespace", 0),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", 1),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", 2),
    ("v1", "ServiceAccount", 3),
    ("v1", "ConfigMap", 3),
    ("v1", "Secret", 3),
    ("apps/v1", "Deployment", 4),
    ("v1", "Service", 4),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", 4),
    ("example.com/v1", "Widget", 5),
]


def test_objects_are_sorted_into_dependency_order_stably() -> None:
    phase = {kind: number for _, kind, number in PHASES}
    objects: list[dict[str, Any]] = [
        {"apiVersion": api_version, "kind": kind, "metadata": {"name": f"{kind.lower()}-{i}"}}
        for i in range(3)
        for api_version, kind, _ in PHASES
    ]
    random.Random(7).shuffle(objects)

    ordered = sort_objects(objects)

    assert [phase[o["kind"]] for o in ordered] == sorted(phase[o["kind"]] for o in objects)
    for number in set(phase.values()):
        in_phase = [o for o in objects if phase[o["kind"]] == number]
        assert [o for o in ordered if phase[o["kind"]] == number] == in_phase


def test_load_objects_keeps_dates_as_written_and_flattens_lists() -> None:
    objects = load_objects(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {day: 2024-01-01}}\n"
        "---\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
        "  labels: {simple-gitops.io/service: web}\n"
    )

    assert [o["metadata"]["name"] for o in objects] == ["a", "b"]
    assert objects[0]["data"]["day"] == "2024-01-01"
    assert first_service(objects) == "web"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: [", "not valid YAML"),
        ("- a\n- b\n", "document 1 is not a mapping"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "has no metadata.name"),
        ("---\nmetadata: {name: x}\n", "has no apiVersion or kind"),
    ],
)
def test_load_objects_names_the_bad_document(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        load_objects(text)


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        ("The connection to the server 127.0.0.1:1 was refused - did you specify...", True),
        ("dial tcp 10.0.0.1:443: i/o timeout", True),
        ("Error from server (ServiceUnavailable): the server is currently unable to handle", True),
        ("net/http: TLS handshake timeout", True),
        ("Error from server (TooManyRequests): Too Many Requests", True),
        ('Error from server (Invalid): Deployment.apps "web" is invalid', False),
        ('Error from server (Forbidden): configmaps "x" is forbidden', False),
    ],
)
def test_kubectl_errors_are_classified_from_stderr(stderr: str, transient: bool) -> None:
    assert is_transient(stderr) is transient
