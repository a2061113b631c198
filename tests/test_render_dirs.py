"""Plain directories as real repositories hold them: subfolders, include/exclude and
.gitopsignore, YAML that is no Kubernetes object, JSON manifests beside JSON
configuration, Helm charts and hooks named, kustomize units inside; and the namespace
and Secret helpers the other stages use."""

from __future__ import annotations

import base64
import copy

import pytest
import yaml

from syncworker.kube.labels import CREATE_ONLY_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from syncworker.kube.refs import ObjectRef
from syncworker.render import (
    RenderError,
    RenderOptions,
    ServiceOptions,
    mask_bundle_yaml,
    mask_secrets,
    render_service,
)
from syncworker.render.namespaces import (
    CREATED_FOR_ANNOTATION,
    PRUNE_ANNOTATION,
    foreign_namespaces,
    namespace_to_create,
)
from syncworker.render.parse import NOT_AN_OBJECT
from syncworker.render.service import MAX_WARNINGS
from syncworker.render.validate import DUPLICATE_HINT
from tests.support.repo_files import disk_files, disk_reader

GUESTBOOK = "kubernetes-examples/guestbook"
CASSANDRA = "kubernetes-examples/cassandra"
GUESTBOOK_OWN = [
    "Service frontend",
    "Service redis-master",
    "Deployment frontend",
    "Deployment redis-master",
]


def render(base_dir, files=None, *, read_root=True, namespace="", **service):
    files = disk_files() if files is None else files
    options = RenderOptions(service="app", base_dir=base_dir, commit="c0ffee", namespace=namespace)
    read_file = files.get if read_root else None
    return render_service(
        disk_reader(files), options, service_options=ServiceOptions(**service), read_file=read_file
    )


def refs(result):
    return [str(ref) for ref in result.bundle.refs]


def errors(base_dir, files=None, **service):
    with pytest.raises(RenderError) as caught:
        render(base_dir, files, **service)
    return caught.value.errors


def test_alternative_subfolders_are_duplicates_named_with_both_places_and_the_way_out():
    found = errors(GUESTBOOK)
    assert (
        f"{GUESTBOOK}/frontend-deployment.yaml: document 1: Deployment frontend: also defined "
        f"at {GUESTBOOK}/all-in-one/guestbook-all-in-one.yaml: document 4 {DUPLICATE_HINT}"
    ) in found
    assert "`recurse: false`" in DUPLICATE_HINT and "`exclude`" in DUPLICATE_HINT


def test_recurse_false_reads_only_the_directory_own_files():
    assert refs(render(GUESTBOOK, recurse=False)) == GUESTBOOK_OWN


def test_exclude_leaves_folders_out_with_gitignore_patterns():
    assert refs(render(GUESTBOOK, exclude=("all-in-one/", "legacy/"))) == GUESTBOOK_OWN
    # Without the trailing slash or anchoring, gitignore matches at any depth.
    assert refs(render(GUESTBOOK, exclude=("all-in-one", "/legacy"))) == GUESTBOOK_OWN


def test_include_reads_only_what_it_names_and_exclude_still_applies():
    result = render(GUESTBOOK, include=("legacy/", "frontend-*.yaml"), exclude=("*-service.yaml",))
    assert refs(result) == ["Deployment frontend", "ReplicationController frontend"]


def test_a_gitopsignore_in_the_service_directory_leaves_paths_out():
    files = disk_files() | {f"{GUESTBOOK}/.gitopsignore": b"# alternatives\nall-in-one/\nlegacy/\n"}
    assert refs(render(GUESTBOOK, files)) == GUESTBOOK_OWN


def test_a_gitopsignore_at_the_repository_root_matches_repository_paths_and_negations():
    ignore = b"kubernetes-examples/guestbook/*/\n!kubernetes-examples/guestbook/legacy/\n"
    files = disk_files() | {".gitopsignore": ignore}
    result = render(GUESTBOOK, files, exclude=("legacy/redis-master-service.yaml",))
    assert refs(result) == [*GUESTBOOK_OWN, "ReplicationController frontend"]
    assert ".gitopsignore" in result.paths_read  # a change to it must re-render


def test_the_root_gitopsignore_is_not_looked_for_without_a_file_reader():
    files = disk_files() | {".gitopsignore": b"kubernetes-examples/guestbook/*/\n"}
    assert len(errors(GUESTBOOK, files, read_root=False)) > 0
    assert render(GUESTBOOK, files, read_root=False, recurse=False).paths_read == (GUESTBOOK,)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ({"include": ("!",)}, "include[0]: '!' is not a gitignore-style pattern"),
        ({"exclude": ("ok/", "!")}, "exclude[1]: '!' is not a gitignore-style pattern"),
    ],
)
def test_a_pattern_gitignore_cannot_read_is_named(service, expected):
    [error] = errors(GUESTBOOK, **service)
    assert error.startswith(expected)


def test_a_bad_line_of_a_gitopsignore_is_named_with_its_line():
    files = disk_files() | {f"{GUESTBOOK}/.gitopsignore": b"legacy/\n!\n"}
    [error] = errors(GUESTBOOK, files)
    assert error.startswith(f"{GUESTBOOK}/.gitopsignore: line 2: '!' is not a gitignore pattern")


def test_yaml_that_is_no_kubernetes_object_is_skipped_with_a_warning():
    result = render(CASSANDRA)
    assert refs(result) == ["Service cassandra", "StatefulSet cassandra"]
    assert result.warnings == (
        f"{CASSANDRA}/image/files/cassandra.yaml: document 1: {NOT_AN_OBJECT}",
    )
    assert result.bundle.warnings == result.warnings


def test_lists_scalars_and_mappings_without_apiversion_and_kind_are_skipped_per_document():
    files = {
        "app/mixed.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        b"- a list\n---\njust text\n---\nreplicaCount: 2\n",
    }
    result = render("app", files)
    assert refs(result) == ["ConfigMap a"]
    assert result.warnings == tuple(
        f"app/mixed.yaml: document {n}: {NOT_AN_OBJECT}" for n in (2, 3, 4)
    )


def test_warnings_are_bounded_and_say_how_many_were_left_out():
    files = {f"app/values-{i:03d}.yaml": b"replicaCount: 1\n" for i in range(MAX_WARNINGS + 5)}
    files["app/cm.yaml"] = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    warnings = render("app", files).warnings
    assert len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == "… and 5 more warnings"


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ("kind: ConfigMap\nmetadata: {name: b}", "document 2: apiVersion: required"),
        ("apiVersion: v1\nmetadata: {name: b}", "document 2: kind: required"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}", "document 2: metadata.name: required"),
    ],
)
def test_a_broken_object_still_fails_the_whole_bundle(document, error):
    files = {
        "app/a.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n---\n{document}"
    }
    assert errors("app", {p: t.encode() for p, t in files.items()}) == [f"app/a.yaml: {error}"]


def test_invalid_yaml_still_fails_the_bundle_even_beside_skipped_documents():
    files = {"app/values.yaml": b"replicaCount: 1\n", "app/bad.yaml": b"key: [unclosed\n"}
    [error] = errors("app", files)
    assert error.startswith("app/bad.yaml: line 2, column 1: invalid YAML")


def test_json_objects_and_lists_are_manifests_and_other_json_is_the_config_map():
    result = render("json-app")
    assert refs(result) == [
        "ConfigMap app-config",
        "Service api",
        "Service api-internal",
        "Deployment api",
    ]
    config = next(o for o in result.bundle.objects if o["kind"] == "ConfigMap")
    assert sorted(config["data"]) == ["config_settings.json", "package.json"]


def test_a_broken_json_object_fails_naming_the_file():
    files = {"app/svc.json": b'{"apiVersion": "v1", "kind": "Service", "metadata": {}}'}
    assert errors("app", files) == ["app/svc.json: document 1: metadata.name: required"]
    files = {"app/svc.json": b'{"apiVersion": "v1", "kind": "Service", "kind": "Pod"}'}
    assert errors("app", files) == ["app/svc.json: invalid JSON: duplicate key 'kind'"]


def test_a_helm_chart_fails_naming_its_chart_file():
    assert errors("argocd-example-apps") == [
        "argocd-example-apps/helm-guestbook/Chart.yaml: a Helm chart; Helm charts are not "
        "rendered (commit the output of `helm template`, or leave the chart out with `exclude`)"
    ]


def test_a_chart_left_out_by_exclude_is_not_in_the_way():
    result = render("argocd-example-apps/helm-guestbook", exclude=("Chart.yaml", "templates/"))
    assert refs(result) == [] and len(result.warnings) == 1  # values.yaml, skipped


def test_argo_cds_pre_post_sync_example_renders_its_hook_outside_the_inventory():
    result = render("argocd-example-apps/pre-post-sync")
    # The generateName PreSync Job is in the bundle (to be created), never in the refs.
    assert refs(result) == ["Service guestbook-ui", "Deployment guestbook-ui"]
    hook = [o for o in result.bundle.objects if o["kind"] == "Job"]
    assert hook and hook[0]["metadata"]["generateName"] == "upgrade-sql-schema"


def test_a_subdirectory_with_a_kustomization_is_built_as_one_unit_beside_plain_files():
    result = render("monorepo/apps/platform")
    assert refs(result) == [
        "Namespace platform",
        "ResourceQuota platform/team-a",
        "ConfigMap platform/addon-web-settings-hd8b8hkgd2",
        "Service platform/addon-web",
        "Deployment platform/addon-web",
    ]  # extra.yaml is in the unit but not in its kustomization: not read
    assert result.paths_read == (
        ".gitopsignore",
        "monorepo/apps/platform",
        "monorepo/apps/web/base",
    )


def test_a_kustomize_unit_left_out_is_not_built_and_its_files_not_read():
    result = render("monorepo/apps/platform", exclude=("cluster-addons/",))
    assert refs(result) == ["Namespace platform", "ResourceQuota platform/team-a"]
    assert "monorepo/apps/web/base" not in result.paths_read
    assert refs(render("monorepo/apps/platform", recurse=False)) == ["Namespace platform"]


def test_directory_rules_do_not_apply_inside_a_kustomization_directory():
    plain = render("monorepo/apps/web/base")
    filtered = render("monorepo/apps/web/base", recurse=False, exclude=("*.yaml",))
    assert refs(filtered) == refs(plain) and len(refs(plain)) == 3


def test_the_service_namespace_is_created_labelled_as_ours_and_never_pruned():
    result = render(GUESTBOOK, namespace="guestbook", recurse=False)
    assert result.namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "guestbook",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {
                CREATE_ONLY_ANNOTATION: "true",
                CREATED_FOR_ANNOTATION: "app",
                PRUNE_ANNOTATION: "never",
            },
        },
    }
    assert "Namespace guestbook" not in refs(result)  # not in the inventory: never pruned
    off = render(GUESTBOOK, namespace="guestbook", recurse=False, create_namespace=False)
    assert off.namespace is None
    assert render(GUESTBOOK, recurse=False).namespace is None


def test_a_namespace_the_bundle_defines_is_not_created_a_second_time():
    result = render("monorepo/apps/platform", namespace="platform")
    assert result.namespace is None
    assert namespace_to_create([], "platform", service="app") is not None


def test_foreign_namespaces_are_those_used_but_neither_own_nor_in_the_bundle():
    objects = render("monorepo/apps/platform").bundle.objects
    extra = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ops"}}
    mine = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y", "namespace": "app"}}
    assert foreign_namespaces([*objects, extra, mine], own="app") == {
        "ops": [ObjectRef("v1", "ConfigMap", "ops", "x")]
    }


def test_secret_values_from_a_secret_generator_are_masked_and_keys_kept():
    bundle = render("monorepo/apps/web/overlays/production").bundle
    masked = mask_secrets(bundle.objects)
    secret = next(o for o in masked if o["kind"] == "Secret")

    assert secret["data"] == {"API_TOKEN": "(hidden)", "DATABASE_PASSWORD": "(hidden)"}
    assert [o for o in masked if o["kind"] != "Secret"] == [
        o for o in bundle.objects if o["kind"] != "Secret"
    ]
    assert base64.b64encode(b"s3cr3t-production-password").decode() in bundle.yaml
    shown = mask_bundle_yaml(bundle.yaml)
    assert "s3cr3t" not in shown and base64.b64encode(b"s3cr3t").decode()[:6] not in shown
    assert [ObjectRef.of(o) for o in yaml.safe_load_all(shown)] == list(bundle.refs)


def test_masking_covers_string_data_and_last_applied_and_leaves_the_input_alone():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"x":"pw"}'},
        },
        "stringData": {"password": "pw-1234"},
    }
    before = copy.deepcopy(secret)
    [masked] = mask_secrets([secret])
    assert masked["stringData"] == {"password": "(hidden)"}
    assert masked["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": "(hidden)"
    }
    assert secret == before
