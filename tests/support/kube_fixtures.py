"""pytest fixtures for a real Kubernetes API server (see :mod:`tests.support.kubeenv`).

List this module in ``pytest_plugins`` of ``tests/conftest.py``. The server is started once per
test session, on first use, and stopped at the end of the session:

- ``kube_env``: the running :class:`~tests.support.kubeenv.KubeTestEnv` (session)
- ``kube_api_client``: a ``kubernetes.client.ApiClient`` for it, as cluster admin (function)
- ``kube_namespace``: the name of a fresh namespace, deleted after the test (function)
- ``kube_cluster``: a :class:`~tests.support.kubecluster.KubeClusterEnv`, a second server with
  kube-controller-manager, kube-scheduler and kwok nodes, where workloads roll out (session;
  started only when a test asks for it, so the others do not pay for the controllers)
- ``cluster_namespace``: the name of a fresh namespace in that cluster (function)
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.support.kubecluster import KubeClusterEnv
from tests.support.kubeenv import KubeTestEnv

NAMESPACE_LABEL = "simple-gitops.test/created-by"


def _namespace_name(request: pytest.FixtureRequest) -> str:
    """A unique namespace name that says which test made it."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{slug or 'test'}-{uuid.uuid4().hex[:8]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kube: needs the real kube-apiserver test environment")
    config.addinivalue_line(
        "markers", "kube_cluster: needs the test cluster (controllers, scheduler, kwok nodes)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server ``kube`` (and the cluster also ``kube_cluster``), so
    ``-m "not kube"`` or ``-m "not kube_cluster"`` leaves them out."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kube_env" in fixtures or "kube_cluster" in fixtures:
            item.add_marker(pytest.mark.kube)
        if "kube_cluster" in fixtures:
            item.add_marker(pytest.mark.kube_cluster)


@pytest.fixture(scope="session")
def kube_env() -> Iterator[KubeTestEnv]:
    """One kube-apiserver (with embedded etcd) for the whole session."""
    env = KubeTestEnv()
    env.start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeClusterEnv]:
    """One test cluster for the whole session: API server, controller-manager, scheduler and
    three kwok nodes. Its own server, not ``kube_env``'s, so that only tests that need the
    controllers start them."""
    env = KubeClusterEnv()
    env.start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def kube_api_client(kube_env: KubeTestEnv) -> Iterator[client.ApiClient]:
    """An official Python client configured from the test server's kubeconfig."""
    api_client = config.new_client_from_config(config_file=str(kube_env.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def kube_namespace(
    kube_api_client: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A namespace of its own for one test, named after it; deleted afterwards.

    With no controller-manager running, a deleted namespace stays ``Terminating`` (its
    contents are not garbage-collected); names are unique, so that does not matter.
    """
    name = _namespace_name(request)
    core = client.CoreV1Api(kube_api_client)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "pytest"})
        )
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def cluster_namespace(
    kube_cluster: KubeClusterEnv, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace in the test cluster for one test; deleted afterwards (the namespace
    controller then removes what is left in it, without the test waiting for that)."""
    name = _namespace_name(request)
    kubectl = kube_cluster.kubectl_command
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {NAMESPACE_LABEL: "pytest"}},
    }
    created = subprocess.run(
        kubectl("create", "-f", "-"),
        input=json.dumps(namespace),
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    try:
        yield name
    finally:
        subprocess.run(
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found"),
            capture_output=True,
            check=False,
        )
