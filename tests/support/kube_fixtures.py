"""pytest fixtures for a real Kubernetes API server (see :mod:`tests.support.kubeenv`).

List this module in ``pytest_plugins`` of ``tests/conftest.py``. The server is started once per
test session, on first use, and stopped at the end of the session:

- ``kube_env``: the running :class:`~tests.support.kubeenv.KubeTestEnv` (session)
- ``kube_api_client``: a ``kubernetes.client.ApiClient`` for it, as cluster admin (function)
- ``kube_namespace``: the name of a fresh namespace, deleted after the test (function)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.support.kubeenv import KubeTestEnv

NAMESPACE_LABEL = "simple-gitops.test/created-by"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kube: needs the real kube-apiserver test environment")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the server ``kube``, so ``-m "not kube"`` leaves them out."""
    for item in items:
        if "kube_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kube)


@pytest.fixture(scope="session")
def kube_env() -> Iterator[KubeTestEnv]:
    """One kube-apiserver (with embedded etcd) for the whole session."""
    env = KubeTestEnv()
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
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug or 'test'}-{uuid.uuid4().hex[:8]}"
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
