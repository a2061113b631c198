from __future__ import annotations

from pathlib import Path

from syncworker.applyers.file import FileApplyer
from syncworker.kube.labels import CREATE_ONLY_ANNOTATION
from syncworker.kube.refs import ObjectRef

BUNDLE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: demo
  labels:
    simple-gitops.io/service: web
data:
  released: 2024-01-01
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  labels:
    simple-gitops.io/service: web
spec:
  ports: [{port: 80}]
"""

UNLABELLED = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
"""


def test_apply_writes_the_bundle_to_a_file_named_after_the_service(tmp_path: Path) -> None:
    applyer = FileApplyer(directory=tmp_path / "rendered")
    assert applyer.install()[0]

    ok, output = applyer.apply(BUNDLE)

    target = (tmp_path / "rendered" / "web.yaml").resolve()
    assert ok, output
    assert output == f"wrote 2 objects to {target}"
    assert target.read_text() == BUNDLE


def test_apply_replaces_the_previous_bundle_and_leaves_no_temporary_files(
    tmp_path: Path,
) -> None:
    applyer = FileApplyer(directory=tmp_path)
    assert applyer.apply(BUNDLE)[0]

    ok, _ = applyer.apply(BUNDLE.replace("port: 80", "port: 8080"))

    assert ok
    assert [p.name for p in tmp_path.iterdir()] == ["web.yaml"]
    assert "port: 8080" in (tmp_path / "web.yaml").read_text()


def test_a_bundle_without_service_label_is_written_to_bundle_yaml(tmp_path: Path) -> None:
    ok, output = FileApplyer(directory=tmp_path).apply(UNLABELLED)

    assert ok, output
    assert (tmp_path / "bundle.yaml").read_text() == UNLABELLED


def test_apply_creates_the_directory_when_missing(tmp_path: Path) -> None:
    ok, _ = FileApplyer(directory=tmp_path / "a" / "b").apply(BUNDLE)

    assert ok
    assert (tmp_path / "a" / "b" / "web.yaml").exists()


def test_apply_refuses_to_write_outside_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "rendered"
    hostile = BUNDLE.replace("simple-gitops.io/service: web", "simple-gitops.io/service: ../x")

    ok, output = FileApplyer(directory=root).apply(hostile)

    assert not ok
    assert "outside" in output
    assert not (tmp_path / "x.yaml").exists()


def test_apply_refuses_to_follow_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "rendered"
    root.mkdir()
    (root / "web.yaml").symlink_to(tmp_path / "elsewhere.yaml")

    ok, output = FileApplyer(directory=root).apply(BUNDLE)

    assert not ok
    assert "outside" in output
    assert not (tmp_path / "elsewhere.yaml").exists()


def test_invalid_yaml_is_refused(tmp_path: Path) -> None:
    ok, output = FileApplyer(directory=tmp_path).apply("kind: [unclosed")

    assert not ok
    assert "invalid bundle" in output
    assert not list(tmp_path.iterdir())


def test_prune_is_not_supported(tmp_path: Path) -> None:
    applyer = FileApplyer(directory=tmp_path)

    assert applyer.can_prune is False
    assert applyer.prune([], service="web").ok


def test_apply_bundle_reports_the_objects_written_and_the_create_only_ones_apart(
    tmp_path: Path,
) -> None:
    namespace = (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n"
        f"  annotations: {{{CREATE_ONLY_ANNOTATION}: 'true'}}\n---\n"
    )

    report = FileApplyer(directory=tmp_path).apply_bundle(namespace + BUNDLE)

    assert report.ok, report.output
    assert (tmp_path / "web.yaml").read_text() == namespace + BUNDLE
    assert report.create_only == [ObjectRef("v1", "Namespace", "", "demo")]
    assert report.applied == [
        ObjectRef("v1", "ConfigMap", "demo", "web-config"),
        ObjectRef("v1", "Service", "demo", "web"),
    ]


def test_a_bundle_that_could_not_be_written_reports_nothing_applied(tmp_path: Path) -> None:
    hostile = BUNDLE.replace("simple-gitops.io/service: web", "simple-gitops.io/service: ../x")

    report = FileApplyer(directory=tmp_path / "rendered").apply_bundle(hostile)

    assert not report.ok
    assert report.applied == []
