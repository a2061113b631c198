"""Rendering a service directory: parsing, labels and namespaces, order, determinism."""

from __future__ import annotations

import hashlib
import itertools
import textwrap

import pytest
import yaml

from syncworker.kube.labels import (
    COMMIT_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SERVICE_LABEL,
)
from syncworker.kube.refs import ObjectRef
from syncworker.render import Bundle, RenderOptions, render_bundle
from syncworker.render import parse as parse_module
from syncworker.render.bundle import make_bundle, prepend
from syncworker.sources.base import SourceFile, UnsafePathError

BASE = "deploy/web"
OPTIONS = RenderOptions(service="web", base_dir=BASE, commit="c0ffee")


def src(path: str, text: str) -> SourceFile:
    return SourceFile(f"{BASE}/{path}", textwrap.dedent(text).encode())


def names(bundle: Bundle) -> list[str]:
    return [str(ref) for ref in bundle.refs]


def find(bundle: Bundle, kind: str, name: str) -> dict:
    return next(o for o in bundle.objects if o["kind"] == kind and o["metadata"]["name"] == name)


APP = src(
    "app.yaml",
    """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web}
      annotations: {team: platform}
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: web, image: nginx:1.27}]
    ---
    # an empty document: skipped
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {ports: [{port: 80}]}
    """,
)


def test_it_reads_every_document_of_yaml_and_yml_files_and_ignores_other_files():
    files = [
        APP,
        src("extra/cm.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n"),
        src("README.md", "not: [yaml"),
        src("notes.txt", "kind: Secret"),
    ]
    bundle = render_bundle(files, OPTIONS)
    assert names(bundle) == ["ConfigMap extra", "Service web", "Deployment web"]


def test_a_v1_list_is_expanded_into_its_items():
    files = [
        src(
            "list.yaml",
            """
            apiVersion: v1
            kind: List
            items:
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: one}}
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}
            """,
        )
    ]
    assert names(render_bundle(files, OPTIONS)) == ["ConfigMap one", "ConfigMap two"]


def test_json_files_become_one_config_map_keyed_by_their_relative_path():
    database = b'{\n  "host": "db",\n  "port": 5432\n}\n'
    files = [
        SourceFile(f"{BASE}/configs/database.json", database),
        SourceFile(f"{BASE}/app-settings.json", b'{"debug": false}'),
    ]
    bundle = render_bundle(files, OPTIONS)
    assert names(bundle) == ["ConfigMap web-config"]
    assert bundle.objects[0]["data"] == {
        "app-settings.json": '{"debug": false}',
        "configs_database.json": database.decode(),
    }


def test_a_service_directory_at_the_repository_root_reads_every_file():
    files = [SourceFile("a.yaml", b"{apiVersion: v1, kind: ConfigMap, metadata: {name: a}}")]
    bundle = render_bundle(files, RenderOptions(service="web", base_dir="", commit="c0ffee"))
    assert names(bundle) == ["ConfigMap a"]


@pytest.mark.parametrize(
    "path", ["deploy/other/a.yaml", "deploy/webx/a.yaml", "deploy/web/../x.yaml", "/etc/a.yaml"]
)
def test_files_outside_the_service_directory_are_refused(path):
    with pytest.raises(UnsafePathError):
        render_bundle([SourceFile(path, b"{}")], OPTIONS)


def test_a_service_directory_outside_the_repository_is_refused():
    with pytest.raises(UnsafePathError):
        render_bundle([], RenderOptions(service="web", base_dir="../elsewhere", commit="c0ffee"))


def test_every_object_gets_our_labels_and_keeps_its_own_but_no_commit_annotation():
    bundle = render_bundle([APP], OPTIONS)
    meta = find(bundle, "Deployment", "web")["metadata"]
    assert meta["labels"] == {
        "app": "web",
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        SERVICE_LABEL: "web",
    }
    assert meta["annotations"] == {"team": "platform"}
    assert all(
        COMMIT_ANNOTATION not in (obj["metadata"].get("annotations") or {})
        for obj in bundle.objects
    )
    assert find(bundle, "Service", "web")["metadata"]["labels"] == {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        SERVICE_LABEL: "web",
    }
    # Pod templates are not ours to label: a changed label would roll every pod.
    template = find(bundle, "Deployment", "web")["spec"]["template"]["metadata"]
    assert template == {"labels": {"app": "web"}}


SCOPES = src(
    "scopes.yaml",
    """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: clusterwidgets.example.com}
    spec:
      group: example.com
      scope: Cluster
      names: {kind: ClusterWidget, plural: clusterwidgets}
      versions: [{name: v1, served: true, storage: true}]
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.example.com}
    spec:
      group: example.com
      scope: Namespaced
      names: {kind: Widget, plural: widgets}
      versions: [{name: v1, served: true, storage: true}]
    ---
    {apiVersion: example.com/v1, kind: ClusterWidget, metadata: {name: big}}
    ---
    {apiVersion: example.com/v1, kind: Widget, metadata: {name: small}}
    ---
    {apiVersion: other.io/v1, kind: Gadget, metadata: {name: unknown-crd}}
    ---
    {apiVersion: v1, kind: Namespace, metadata: {name: team}}
    ---
    {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: reader}}
    ---
    {apiVersion: v1, kind: ConfigMap, metadata: {name: elsewhere, namespace: other}}
    """,
)


def test_the_default_namespace_goes_only_to_namespaced_objects_without_one():
    bundle = render_bundle([APP, SCOPES], RenderOptions("web", BASE, "c0ffee", namespace="team"))
    namespaces = {
        f"{o['kind']} {o['metadata']['name']}": o["metadata"].get("namespace")
        for o in bundle.objects
    }
    assert namespaces == {
        "CustomResourceDefinition clusterwidgets.example.com": None,
        "CustomResourceDefinition widgets.example.com": None,
        "ClusterWidget big": None,
        "Widget small": "team",
        "Gadget unknown-crd": "team",
        "Namespace team": None,
        "ClusterRole reader": None,
        "ConfigMap elsewhere": "other",
        "Deployment web": "team",
        "Service web": "team",
    }


def test_without_a_default_namespace_objects_keep_theirs_or_none():
    bundle = render_bundle([APP], OPTIONS)
    assert [o["metadata"].get("namespace") for o in bundle.objects] == [None, None]


def test_objects_are_ordered_for_applying():
    rbac = src(
        "rbac.yaml",
        """
        {apiVersion: v1, kind: ServiceAccount, metadata: {name: web}}
        ---
        {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: rb}}
        ---
        {apiVersion: v1, kind: Secret, metadata: {name: creds}}
        ---
        {apiVersion: networking.k8s.io/v1, kind: Ingress, metadata: {name: web}}
        ---
        {apiVersion: scheduling.k8s.io/v1, kind: PriorityClass, metadata: {name: high}}
        ---
        {apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: pods}}
        """,
    )
    files = [APP, SCOPES, rbac, SourceFile(f"{BASE}/settings.json", b"{}")]
    bundle = render_bundle(files, RenderOptions("web", BASE, "c0ffee", namespace="team"))
    assert names(bundle) == [
        "Namespace team",
        "CustomResourceDefinition clusterwidgets.example.com",
        "CustomResourceDefinition widgets.example.com",
        "ClusterRole reader",
        "ClusterRoleBinding rb",
        "PriorityClass high",
        "ServiceAccount team/web",
        "Secret team/creds",
        "ConfigMap other/elsewhere",
        "ConfigMap team/web-config",
        "Role team/pods",
        "Service team/web",
        "Deployment team/web",
        "Ingress team/web",
        "ClusterWidget big",
        "Gadget team/unknown-crd",
        "Widget team/small",
    ]


def test_the_bundle_does_not_depend_on_the_order_of_files_or_documents():
    options = RenderOptions("web", BASE, "c0ffee", namespace="team")
    config = src("x.json", "{}")
    reordered = SourceFile(SCOPES.path, b"\n---\n".join(reversed(SCOPES.data.split(b"\n---\n"))))
    renders = [
        render_bundle(files, options) for files in itertools.permutations([APP, SCOPES, config])
    ]
    renders.append(render_bundle([reordered, config, APP], options))
    assert len({(bundle.yaml, bundle.digest) for bundle in renders}) == 1


def test_the_yaml_is_sorted_multi_document_yaml_and_the_digest_its_sha256():
    bundle = render_bundle([APP], OPTIONS)
    assert bundle.yaml.startswith("---\napiVersion: v1\nkind: Service\n")
    assert bundle.yaml.count("---\n") == 2
    assert list(yaml.safe_load_all(bundle.yaml)) == list(bundle.objects)
    assert bundle.digest == hashlib.sha256(bundle.yaml.encode()).hexdigest()
    assert bundle.refs == (
        ObjectRef("v1", "Service", "", "web"),
        ObjectRef("apps/v1", "Deployment", "", "web"),
    )


def test_the_digest_changes_when_one_field_changes():
    changed = SourceFile(APP.path, APP.data.replace(b"nginx:1.27", b"nginx:1.28"))
    before, after = render_bundle([APP], OPTIONS), render_bundle([changed], OPTIONS)
    assert before.digest != after.digest
    assert before.digest == render_bundle([APP], OPTIONS).digest


def test_another_commit_of_the_same_files_renders_the_same_bundle():
    # What makes a commit that touches one file write one object: nothing per commit
    # is stamped on the objects.
    other = RenderOptions(service="web", base_dir=BASE, commit="beef")
    before, after = render_bundle([APP], OPTIONS), render_bundle([APP], other)
    assert (before.yaml, before.digest) == (after.yaml, after.digest)


def test_yaml_is_read_with_the_c_loader(monkeypatch):
    used = []
    load_all = yaml.load_all

    def spy(stream, Loader):
        used.append(Loader)
        return load_all(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load_all", spy)
    render_bundle([APP], OPTIONS)
    assert used == [parse_module.Loader]
    if yaml.__with_libyaml__:
        assert issubclass(parse_module.Loader, yaml.CSafeLoader)


def test_values_are_read_as_kubernetes_reads_them():
    files = [
        src(
            "cm.yaml",
            """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: dates}
            data:
              released: 2024-01-01
              at: 2024-01-01T10:00:00Z
              equals: =
              octal: "0755"
            """,
        )
    ]
    data = render_bundle(files, OPTIONS).objects[0]["data"]
    assert data == {
        "released": "2024-01-01",
        "at": "2024-01-01T10:00:00Z",
        "equals": "=",
        "octal": "0755",
    }


def test_yaml_anchors_are_expanded_into_separate_objects():
    files = [
        src(
            "anchors.yaml",
            """
            apiVersion: v1
            kind: List
            items:
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: &shared {k: v}}
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}, data: *shared}
            """,
        )
    ]
    bundle = render_bundle(files, OPTIONS)
    assert bundle.objects[0]["data"] == bundle.objects[1]["data"] == {"k": "v"}
    assert bundle.objects[0]["data"] is not bundle.objects[1]["data"]
    assert "&" not in bundle.yaml
    assert "*" not in bundle.yaml


def test_multi_line_values_are_dumped_as_blocks():
    files = [SourceFile(f"{BASE}/app.json", b'{\n  "a": 1\n}\n')]
    bundle = render_bundle(files, OPTIONS)
    assert '  app.json: |\n    {\n      "a": 1\n    }\n' in bundle.yaml


def test_a_namespace_put_first_gives_the_bundle_made_with_it_first() -> None:
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "x\ny"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {}},
    ]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}

    joined = prepend(namespace, make_bundle(objects, ["skipped x"]))

    whole = make_bundle([namespace, *objects], ["skipped x"])
    assert (joined.yaml, joined.digest, joined.refs) == (whole.yaml, whole.digest, whole.refs)
    assert joined.objects == whole.objects and joined.warnings == whole.warnings
