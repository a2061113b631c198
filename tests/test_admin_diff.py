"""The admin shows the diff: on the service page (what a sync at the branch head would
change, and the drift of the last check) and before a rollback is confirmed; Secret
values never appear; a rollback happens only on the confirming POST."""

from __future__ import annotations

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client

from syncworker.models import Cluster, Deployment, Repository, Service
from tests.support.e2e import cm
from tests.support.gitserver import WorkingCopy
from tests.support.kubeenv import KubeTestEnv

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
VALUE = "admin-page-secret-value"


def secret(ns: str) -> str:
    meta = {"name": "creds", "namespace": ns}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                           "stringData": {"pw": VALUE}})  # fmt: skip


def test_service_page_and_rollback_confirmation_show_the_diff_masked(
    kube_env: KubeTestEnv, kube_namespace: str, git_repo: WorkingCopy
) -> None:
    ns = kube_namespace
    cluster = Cluster.objects.create(
        name="test", applyer="kubernetes", settings={"kubeconfig": str(kube_env.kubeconfig)},
        is_default=True,
    )  # fmt: skip
    commit = git_repo.commit(
        {"deploy/app/a.yaml": cm("alpha", ns, "one"), "deploy/app/s.yaml": secret(ns)}
    )
    repo = Repository.objects.create(key="adm", provider="git", url=git_repo.url)
    service = Service.objects.create(name="app", repository=repo, k8s_yaml_dir="deploy/app")
    Service.objects.filter(pk=service.pk).update(
        drift=[{"kind": "ConfigMap", "namespace": ns, "name": "alpha", "state": "changed",
                "fields": ["data.value"]}]
    )  # fmt: skip
    old = Deployment.objects.create(
        service=service, cluster=cluster, commit_sha=commit, status="succeeded",
        bundle=cm("beta", ns, "old") + "---\n" + secret(ns), bundle_digest="d", object_count=2,
    )  # fmt: skip
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", password="pw-root-123456"))

    page = browser.get(f"/admin/syncworker/service/{service.pk}/change/").content.decode()
    assert f"created ConfigMap {ns}/alpha" in page and "+  value: one" in page
    assert f"ConfigMap {ns}/alpha changed data.value" in page
    assert f"/admin/syncworker/service/{service.pk}/rollback/{old.pk}/" in page
    assert VALUE not in page

    url = f"/admin/syncworker/service/{service.pk}/rollback/{old.pk}/"
    confirm = browser.get(url).content.decode()
    assert f"created ConfigMap {ns}/beta" in confirm and "+  value: old" in confirm
    assert f"created Secret {ns}/creds" in confirm and VALUE not in confirm
    assert service.deployments.count() == 1, "showing the confirmation changes nothing"

    assert browser.post(url).status_code == 302
    rollback = service.deployments.get(trigger="rollback")
    assert rollback.rollback_of == old and rollback.bundle == old.bundle
