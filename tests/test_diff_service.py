"""``diff_service`` and ``GET /api/services/{id}/diff/`` end to end: a Git server, real
workers syncing to the real kube-apiserver, and the diff of the branch head or a commit
(exit 1 with a pending change, 0 after the sync, 2 when no diff can be made)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from kubernetes import client as k8s
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncworker.models import Cluster, Service
from tests.support.e2e import cm, finished, make_repo, sync
from tests.support.gitserver import WorkingCopy
from tests.support.kubeenv import KubeTestEnv
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
PASSWORD = "hunter2-never-in-a-diff"


def secret(namespace: str, value: str) -> str:
    meta = {"name": "creds", "namespace": namespace}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"pw": value}}
    return yaml.safe_dump(body)


def diff(name: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("diff_service", name, *args, stdout=out, stderr=err)
    return int(exit_.value.code or 0), out.getvalue(), err.getvalue()


def never_shown(text: str) -> None:
    for value in (PASSWORD, "old-" + PASSWORD):
        assert value not in text and base64.b64encode(value.encode()).decode() not in text


@pytest.fixture
def staff() -> APIClient:
    user = User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def test_diff_service_shows_a_pending_change_masked_then_nothing_after_the_sync(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    core: k8s.CoreV1Api,
    kube_namespace: str,
    git_repo: WorkingCopy,
) -> None:
    ns = kube_namespace
    first = git_repo.commit(
        {
            "deploy/app/a.yaml": cm("alpha", ns, "one"),
            "deploy/app/b.yaml": cm("beta", ns, "gone-later"),
            "deploy/app/s.yaml": secret(ns, "old-" + PASSWORD),
        }
    )
    repo, (service,) = make_repo(git_repo, "app")
    code, out, _ = diff("app")
    assert code == 1
    assert f"created ConfigMap {ns}/alpha" in out and "+  value: one" in out
    never_shown(out)

    sync(repo)
    finished(service, 1)
    assert diff("app") == (0, diff("app")[1], "")
    assert "no difference (3 objects unchanged)" in diff("app")[1]

    git_repo.commit(
        {
            "deploy/app/a.yaml": cm("alpha", ns, "two"),
            "deploy/app/b.yaml": None,
            "deploy/app/s.yaml": secret(ns, PASSWORD),
        }
    )
    code, out, _ = diff("app")
    assert code == 1, out
    assert f"changed ConfigMap {ns}/alpha (data.value)" in out
    assert "-  value: one\n+  value: two" in out
    assert f"changed Secret {ns}/creds (data.pw)" in out and "(hidden, changed)" in out
    assert f"pruned ConfigMap {ns}/beta" in out
    never_shown(out)
    assert core.read_namespaced_config_map("alpha", ns).data == {"value": "one"}, "unchanged"
    # The commit that is deployed has no difference.
    assert diff("app", "--commit", first)[0] == 0

    sync(repo)
    finished(service, 2)
    assert diff("app")[0] == 0


def test_diff_api_answers_the_same_and_refuses_what_it_cannot_diff(
    cluster: Cluster, kube_namespace: str, git_repo: WorkingCopy, staff: APIClient
) -> None:
    git_repo.commit({"deploy/app/s.yaml": secret(kube_namespace, PASSWORD)})
    _, (service,) = make_repo(git_repo, "app")
    answer = staff.get(f"/api/services/{service.pk}/diff/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["changed"], body["compared"], body["unchanged"]) == (True, "branch head", 0)
    (obj,) = body["objects"]
    assert (obj["kind"], obj["name"], obj["action"]) == ("Secret", "creds", "created")
    never_shown(json.dumps(body))

    bad = staff.get(f"/api/services/{service.pk}/diff/?commit=not-a-sha")
    assert bad.status_code == 400 and "commit" in bad.json()
    unknown = staff.get(f"/api/services/{service.pk}/diff/?commit={'0' * 40}")
    assert unknown.status_code == 422, unknown.content
    code, _, err = diff("app", "--commit", "0" * 40)
    assert code == 2 and "cannot read" in err
    code, _, err = diff("nope")
    assert code == 2 and "no service named 'nope'" in err


def test_an_unreachable_cluster_is_an_error_not_a_difference(
    kube_env: KubeTestEnv, git_repo: WorkingCopy, staff: APIClient, tmp_path: Path
) -> None:
    from tests.test_applyers_kubernetes import closed_port_kubeconfig

    kubeconfig = closed_port_kubeconfig(kube_env, tmp_path)
    Cluster.objects.create(
        name="down", applyer="kubernetes", settings={"kubeconfig": str(kubeconfig)}, is_default=True
    )
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", "default", "one")})
    _, (service,) = make_repo(git_repo, "app")
    code, out, err = diff("app")
    assert (code, out) == (2, "") and "cluster down" in err
    answer = staff.get(f"/api/services/{Service.objects.get().pk}/diff/")
    assert answer.status_code == 503 and "cluster down" in answer.json()["detail"]
    assert service.pk
