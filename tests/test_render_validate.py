"""Validation: every problem of a bundle, each naming file, document and field, at once."""

from __future__ import annotations

import re
import textwrap

import pytest

from syncworker.render import RenderError, RenderOptions, render_bundle
from syncworker.render.parse import MAX_DEPTH, MAX_VALUES_PER_FILE
from syncworker.render.validate import (
    DUPLICATE_HINT,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_OBJECTS,
    MAX_TOTAL_BYTES,
)
from syncworker.sources.base import SourceFile

BASE = "deploy/web"
OPTIONS = RenderOptions(service="web", base_dir=BASE, commit="c0ffee")
GOOD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n"


def src(path: str, text: str) -> SourceFile:
    return SourceFile(f"{BASE}/{path}", textwrap.dedent(text).encode())


def errors_of(files: list[SourceFile], options: RenderOptions = OPTIONS) -> list[str]:
    with pytest.raises(RenderError) as caught:
        render_bundle(files, options)
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ("kind: ConfigMap\nmetadata: {name: a}", "apiVersion: required"),
        (
            "apiVersion: Apps/V1\nkind: ConfigMap\nmetadata: {name: a}",
            "apiVersion: 'Apps/V1' is not an API version (like v1, apps/v1 or "
            "example.com/v1alpha1)",
        ),
        (
            "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: a}",
            "apiVersion: 1 is not an API version (like v1, apps/v1 or example.com/v1alpha1)",
        ),
        ("apiVersion: v1\nmetadata: {name: a}", "kind: required"),
        (
            "apiVersion: v1\nkind: configMap\nmetadata: {name: a}",
            "kind: 'configMap' is not a CamelCase kind (like ConfigMap)",
        ),
        ("apiVersion: v1\nkind: ConfigMap", "metadata: required"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [a]",
            "metadata: must be a mapping, not a list",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {}}", "metadata.name: required"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ''}", "metadata.name: required"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 12}",
            "metadata.name: must be a string, not an integer",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a/b}",
            "metadata.name: 'a/b' is not a valid name (no '/', '%' or spaces, not . or ..)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ..}",
            "metadata.name: '..' is not a valid name (no '/', '%' or spaces, not . or ..)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 'a b'}",
            "metadata.name: 'a b' is not a valid name (no '/', '%' or spaces, not . or ..)",
        ),
        (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {'a' * 254}}}",
            "metadata.name: longer than 253 characters",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: Team_A}",
            "metadata.name: 'Team_A' is not a DNS-1123 label",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: Prod_1}",
            "metadata.namespace: 'Prod_1' is not a DNS-1123 label",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: prod}",
            "metadata.namespace: must not be set, Namespace is cluster-scoped",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: [app]}",
            "metadata.labels: must be a mapping of strings, not a list",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {version: 2}}",
            "metadata.labels.version: must be a string, not an integer",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {app: 'my app'}}",
            "metadata.labels.app: 'my app' is not a label value (at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending alphanumeric)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {'a b/c': x}}",
            "metadata.labels[\"a b/c\"]: not a valid key (an optional DNS prefix and '/', "
            "then a name)",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, annotations: x}",
            "metadata.annotations: must be a mapping of strings, not a string",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, annotations: {a.io/b: true}}",
            'metadata.annotations["a.io/b"]: must be a string, not a boolean',
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {1: one}",
            "data: key 1 must be a string (quote it)",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata: {k: !!binary aGk=}",
            "data.k: bytes values are not supported",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {}}",
            "spec.template.spec: must be a mapping, not null",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n"
            "spec: {template: {spec: {containers: []}}}",
            "spec.template.spec.containers: must be a non-empty list",
        ),
        (
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: a}\nspec: {jobTemplate: "
            "{spec: {template: {spec: {containers: [{name: c, env: [{value: x}]}]}}}}}",
            "spec.jobTemplate.spec.template.spec.containers[0].env[0].name: required",
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            "metadata: {name: widgets.example.com}\n"
            "spec: {group: example.com, names: {kind: Widget}, scope: Global}",
            "spec.scope: must be Namespaced or Cluster",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: a, annotations: {argocd.argoproj.io/sync-wave: first}}",
            "metadata.annotations[argocd.argoproj.io/sync-wave]: 'first' is not an integer wave",
        ),
    ],
)
def test_each_problem_names_file_document_and_field(document, error):
    files = [src("bad.yaml", f"{GOOD}---\n{document}\n")]
    assert errors_of(files) == [f"deploy/web/bad.yaml: document 2: {error}"]


def test_a_list_item_is_named_by_its_index():
    files = [src("list.yaml", "apiVersion: v1\nkind: List\nitems:\n- {kind: ConfigMap}\n")]
    assert errors_of(files) == [
        "deploy/web/list.yaml: document 1: items[0]: apiVersion: required",
        "deploy/web/list.yaml: document 1: items[0]: metadata: required",
    ]


def test_an_object_defined_twice_names_both_places():
    files = [
        src("a.yaml", f"{GOOD}---\n{GOOD}"),
        src("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good, namespace: team}"),
        src("c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good, namespace: x}"),
    ]
    assert errors_of(files, RenderOptions("web", BASE, "c0ffee", namespace="team")) == [
        "deploy/web/a.yaml: document 2: ConfigMap team/good: also defined at "
        f"deploy/web/a.yaml: document 1 {DUPLICATE_HINT}",
        "deploy/web/b.yaml: document 1: ConfigMap team/good: also defined at "
        f"deploy/web/a.yaml: document 1 {DUPLICATE_HINT}",
    ]


def test_a_config_map_clashing_with_the_json_configuration_is_a_duplicate():
    files = [
        src("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}"),
        src("settings.json", "{}"),
    ]
    assert errors_of(files) == [
        "(generated from the .json files): ConfigMap web-config: also defined at "
        f"deploy/web/cm.yaml: document 1 {DUPLICATE_HINT}"
    ]


def test_the_same_name_in_another_group_or_kind_is_no_duplicate():
    other_group = "apiVersion: example.com/v1\nkind: ConfigMap\nmetadata: {name: good}\n"
    other_kind = "apiVersion: v1\nkind: Secret\nmetadata: {name: good}\n"
    files = [src("a.yaml", f"{GOOD}---\n{other_group}---\n{other_kind}")]
    assert len(render_bundle(files, OPTIONS).objects) == 3


def test_invalid_yaml_is_reported_with_its_line():
    files = [src("broken.yaml", f"{GOOD}---\nmetadata:\n  name: a\n   labels: x\n")]
    assert errors_of(files) == [
        "deploy/web/broken.yaml: line 7, column 10: invalid YAML: "
        "mapping values are not allowed in this context"
    ]


def test_a_duplicate_key_is_invalid_yaml():
    files = [
        src("dup.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nkind: Secret\n")
    ]
    assert errors_of(files) == [
        "deploy/web/dup.yaml: line 4, column 1: invalid YAML: found duplicate key 'kind'"
    ]


def test_invalid_json_is_reported_with_its_file_and_line():
    files = [src("conf/settings.json", '{\n  "a": 1,\n}\n')]
    assert errors_of(files) == [
        "deploy/web/conf/settings.json: line 3, column 1: invalid JSON: "
        "Expecting property name enclosed in double quotes"
    ]


def test_a_json_file_name_that_cannot_be_a_config_map_key_is_refused():
    files = [src("my settings.json", "{}")]
    assert errors_of(files) == [
        "deploy/web/my settings.json: 'my settings.json' is not a valid ConfigMap key "
        "(letters, digits, '-', '_' and '.', at most 253)"
    ]


def test_too_many_objects():
    items = "".join(
        f"- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c{i}}}}}\n"
        for i in range(MAX_OBJECTS + 1)
    )
    files = [src("many.yaml", f"apiVersion: v1\nkind: List\nitems:\n{items}")]
    assert errors_of(files) == [f"{MAX_OBJECTS + 1} objects, more than the limit of {MAX_OBJECTS}"]


def test_a_too_large_file_is_refused_and_the_others_still_checked():
    big = SourceFile(f"{BASE}/big.yaml", b"#" * (MAX_FILE_BYTES + 1))
    files = [big, src("bad.yaml", "kind: ConfigMap\nmetadata: {name: a}\n")]
    assert errors_of(files) == [
        f"deploy/web/big.yaml: {MAX_FILE_BYTES + 1} bytes, more than the limit of {MAX_FILE_BYTES}",
        "deploy/web/bad.yaml: document 1: apiVersion: required",
    ]


def test_too_many_bytes_in_all():
    count = MAX_TOTAL_BYTES // MAX_FILE_BYTES + 1
    files = [SourceFile(f"{BASE}/{i}.yaml", b"#" * MAX_FILE_BYTES) for i in range(count)]
    assert errors_of(files) == [
        f"{count * MAX_FILE_BYTES} bytes to render, more than the limit of {MAX_TOTAL_BYTES}"
    ]


def test_too_many_files():
    files = [src(f"{i}.yaml", GOOD) for i in range(MAX_FILES + 1)]
    assert errors_of(files) == [
        f"{MAX_FILES + 1} files to render, more than the limit of {MAX_FILES}"
    ]


def test_yaml_aliases_cannot_expand_without_bound():
    lines = ["kind: ConfigMap", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    files = [src("bomb.yaml", "\n".join(lines))]
    [error] = errors_of(files)
    assert re.fullmatch(
        rf"deploy/web/bomb\.yaml: document 1: a5(\[\d\]){{6}}: expands to more than "
        rf"{MAX_VALUES_PER_FILE} values per file",
        error,
    )


def test_nesting_is_bounded():
    deep = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: " + "[" * 200 + "]" * 200
    [error] = errors_of([src("deep.yaml", deep)])
    assert error.startswith("deploy/web/deep.yaml: document 1: data[0][0]")
    assert error.endswith(f": nested more than {MAX_DEPTH} levels deep")


def test_a_file_that_is_not_utf8_is_invalid_yaml():
    [error] = errors_of([SourceFile(f"{BASE}/latin1.yaml", b"name: caf\xe9\n")])
    assert error.startswith("deploy/web/latin1.yaml: byte 9: invalid YAML: ")
    assert "\n" not in error


def test_every_problem_is_reported_at_once():
    files = [
        src("a.yaml", f"{GOOD}---\nkind: ConfigMap\nmetadata: {{name: a}}\n"),
        src("b.yaml", f"apiVersion: v1\nkind: Secret\nmetadata: {{name: a/b}}\n---\n{GOOD}"),
        src("c.yaml", "key: [unclosed\n"),
        src("d.json", "{nope}"),
    ]
    assert errors_of(files) == [
        "deploy/web/c.yaml: line 2, column 1: invalid YAML: did not find expected ',' or ']'",
        "deploy/web/d.json: line 1, column 2: invalid JSON: "
        "Expecting property name enclosed in double quotes",
        "deploy/web/a.yaml: document 2: apiVersion: required",
        "deploy/web/b.yaml: document 1: metadata.name: 'a/b' is not a valid name "
        "(no '/', '%' or spaces, not . or ..)",
        "deploy/web/b.yaml: document 2: ConfigMap good: also defined at "
        f"deploy/web/a.yaml: document 1 {DUPLICATE_HINT}",
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            RenderOptions("Web_1", BASE, "c0ffee"),
            "options.service: 'Web_1' is not a DNS-1123 label",
        ),
        (RenderOptions("web", BASE, ""), "options.commit: '' is not a commit id"),
        (
            RenderOptions("web", BASE, "c0ffee", namespace="Team"),
            "options.namespace: 'Team' is not a DNS-1123 label",
        ),
        (
            RenderOptions("web", BASE, "c0ffee", stateless=True),
            "options.download_base_url: '' is not an http(s) URL, which the stateless pattern "
            "needs",
        ),
    ],
)
def test_bad_options_are_refused(options, error):
    assert errors_of([src("a.yaml", GOOD)], options) == [error]
