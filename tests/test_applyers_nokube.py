"""NokubeApplyer against a stand-in binary downloaded from a local HTTP server (the real
nokube CLI cannot run here; see tests/support/nokube_standin.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from syncworker.applyers.nokube import NokubeApplyer
from syncworker.kube.refs import ObjectRef
from tests.support.nokube_standin import FAIL_MARKER, NokubeDownloadServer, read_record

BUNDLE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: demo
data:
  greeting: hello
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  ports: [{port: 80}]
"""


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "nokube-calls.jsonl"


@pytest.fixture
def download_server(record: Path) -> Iterator[NokubeDownloadServer]:
    with NokubeDownloadServer(record) as server:
        yield server


@pytest.fixture
def bin_path(tmp_path: Path) -> Path:
    return tmp_path / "pod-workspace" / "bin" / "nokube"


def make_applyer(server: NokubeDownloadServer, bin_path: Path) -> NokubeApplyer:
    return NokubeApplyer(
        cluster_name="edge-1", nokube_download_url=server.url, bin_path=str(bin_path)
    )


def test_install_downloads_the_binary_makes_it_executable_and_health_checks_it(
    download_server: NokubeDownloadServer, bin_path: Path, record: Path
) -> None:
    ok, message = make_applyer(download_server, bin_path).install()

    assert ok, message
    assert download_server.requests == [NokubeDownloadServer.path]
    assert bin_path.is_file() and os.access(bin_path, os.X_OK)
    assert read_record(record) == [{"argv": ["--help"], "stdin": ""}]
    assert str(bin_path) in message
    assert not [p for p in bin_path.parent.iterdir() if p.name != "nokube"]


def test_install_does_not_download_again_when_the_binary_is_there(
    download_server: NokubeDownloadServer, bin_path: Path, record: Path
) -> None:
    assert make_applyer(download_server, bin_path).install()[0]
    bin_path.chmod(0o644)  # a copy that lost its mode is made executable again

    ok, message = make_applyer(download_server, bin_path).install()

    assert ok, message
    assert len(download_server.requests) == 1
    assert os.access(bin_path, os.X_OK)
    assert [call["argv"] for call in read_record(record)] == [["--help"], ["--help"]]


def test_apply_runs_nokube_apply_for_the_cluster_with_the_yaml_on_stdin(
    download_server: NokubeDownloadServer, bin_path: Path, record: Path
) -> None:
    applyer = make_applyer(download_server, bin_path)
    assert applyer.install()[0]

    ok, output = applyer.apply(BUNDLE)

    assert ok, output
    assert output == "applied 2 objects to cluster edge-1"
    assert read_record(record)[-1] == {
        "argv": ["apply", "--cluster", "edge-1"],
        "stdin": BUNDLE,
    }


def test_apply_reports_failure_with_nokube_output(
    download_server: NokubeDownloadServer, bin_path: Path
) -> None:
    applyer = make_applyer(download_server, bin_path)
    assert applyer.install()[0]

    ok, output = applyer.apply(f"# {FAIL_MARKER}\n{BUNDLE}")

    assert not ok
    assert "the cluster refused the manifests" in output


def test_install_fails_cleanly_when_the_download_url_is_wrong(
    download_server: NokubeDownloadServer, bin_path: Path
) -> None:
    applyer = NokubeApplyer(
        cluster_name="edge-1",
        nokube_download_url=download_server.base_url + "/missing",
        bin_path=str(bin_path),
    )

    ok, message = applyer.install()

    assert not ok
    assert "404" in message and "/missing" in message
    assert not bin_path.exists()
    assert not list(bin_path.parent.iterdir())


def test_install_fails_without_binary_or_download_url(bin_path: Path) -> None:
    ok, message = NokubeApplyer(cluster_name="edge-1", bin_path=str(bin_path)).install()

    assert not ok
    assert "nokube_download_url" in message


def test_apply_without_installed_binary_fails_with_a_message(bin_path: Path) -> None:
    ok, output = NokubeApplyer(cluster_name="edge-1", bin_path=str(bin_path)).apply(BUNDLE)

    assert not ok
    assert str(bin_path) in output


def test_prune_is_not_supported(bin_path: Path) -> None:
    applyer = NokubeApplyer(cluster_name="edge-1", bin_path=str(bin_path))

    result = applyer.prune([ObjectRef("v1", "ConfigMap", "demo", "old")], service="web")

    assert applyer.can_prune is False
    assert result.ok and result.pruned == []


def test_a_failed_apply_reports_every_object_as_possibly_applied(
    download_server: NokubeDownloadServer, bin_path: Path
) -> None:
    """nokube does not say how far it got: the default ``apply_bundle`` reports the whole
    bundle, so that whatever did arrive is in the inventory."""
    applyer = make_applyer(download_server, bin_path)
    assert applyer.install()[0]

    report = applyer.apply_bundle(f"# {FAIL_MARKER}\n{BUNDLE}")

    assert not report.ok
    assert "the cluster refused the manifests" in report.output
    assert sorted(report.applied) == sorted(ObjectRef.of(obj) for obj in yaml.safe_load_all(BUNDLE))
    assert report.create_only == []
