"""The pending diff on the dashboard's service page and from ``gitops diff``, against a
Git server, the real kube-apiserver and a real worker that syncs: what a sync would change
(Secret values masked), nothing after the sync, and a clear message or exit status 2 when
the cluster cannot be reached."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from syncworker.models import Cluster
from tests import test_cli
from tests.support.e2e import cm, finished, make_repo, sync
from tests.support.gitserver import WorkingCopy
from tests.support.kubeenv import KubeTestEnv
from tests.support.workers import WorkerProcess
from tests.test_cli import make_token
from tests.test_dashboard import text
from tests.test_diff_service import PASSWORD, secret

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
gitops = test_cli.gitops  # the fixture that runs the installed command against live_server


def never_shown(output: str) -> None:
    for value in (PASSWORD, "old-" + PASSWORD):
        assert value not in output and base64.b64encode(value.encode()).decode() not in output


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("admin", password="pw-admin-1234", is_staff=True))
    return client


def test_the_service_page_and_gitops_diff_show_the_pending_change_masked_then_none(
    celery_worker_process: WorkerProcess,
    cluster: Cluster,
    kube_namespace: str,
    git_repo: WorkingCopy,
    staff_client: Client,
    gitops: Any,
) -> None:
    ns = kube_namespace
    git_repo.commit(
        {
            "deploy/app/a.yaml": cm("alpha", ns, "one"),
            "deploy/app/s.yaml": secret(ns, "old-" + PASSWORD),
        }
    )
    repo, (service,) = make_repo(git_repo, "app")
    token = make_token()

    fragment = staff_client.get("/services/app/diff/").content.decode()
    run = gitops("diff", "app", token=token)

    assert f"created ConfigMap {ns}/alpha" in text(fragment)
    assert '<span class="add">+  value: one\n</span>' in fragment
    assert "A sync would change 2 objects" in text(fragment)
    assert run.code == 1, run.err
    assert f"created ConfigMap {ns}/alpha" in run.out and "+  value: one" in run.out
    assert f"created Secret {ns}/creds" in run.out
    never_shown(fragment + run.out)

    sync(repo)
    finished(service, 1)
    git_repo.commit({"deploy/app/s.yaml": secret(ns, PASSWORD)})

    fragment = text(staff_client.get("/services/app/diff/").content.decode())
    run = gitops("diff", "app", token=token)
    as_json = gitops("diff", "app", "-o", "json", token=token)
    deployed = gitops("diff", "app", "--commit", service.deployments.get().commit_sha, token=token)

    assert f"changed Secret {ns}/creds (data.pw)" in fragment and "(hidden, changed)" in fragment
    assert f"ConfigMap {ns}/alpha" not in fragment, "an unchanged object is not listed"
    assert run.code == 1 and f"changed Secret {ns}/creds (data.pw)" in run.out, run.err
    assert (as_json.code, as_json.json()["changed"]) == (1, True)
    assert [o["name"] for o in as_json.json()["objects"]] == ["creds"]
    never_shown(fragment + run.out + as_json.out)
    assert deployed.code == 0, deployed.out + deployed.err
    assert "no difference (2 objects unchanged)" in deployed.out


def test_an_unreachable_cluster_is_a_message_on_the_page_and_exit_2_from_gitops_diff(
    kube_env: KubeTestEnv,
    git_repo: WorkingCopy,
    staff_client: Client,
    gitops: Any,
    tmp_path: Path,
) -> None:
    from tests.test_applyers_kubernetes import closed_port_kubeconfig

    Cluster.objects.create(
        name="down",
        applyer="kubernetes",
        settings={"kubeconfig": str(closed_port_kubeconfig(kube_env, tmp_path))},
        is_default=True,
    )
    git_repo.commit({"deploy/app/a.yaml": cm("alpha", "default", "one")})
    make_repo(git_repo, "app")
    token = make_token()

    page = staff_client.get("/services/app/diff/")
    run = gitops("diff", "app", token=token)
    unknown = gitops("diff", "nope", token=token)
    anonymous = gitops("diff", "app")
    bad_commit = gitops("diff", "app", "--commit", "not-a-sha", token=token)

    assert page.status_code == 200
    assert "The cluster cannot be reached, so there is no diff now" in text(page.content.decode())
    assert "cluster down" in page.content.decode()
    assert (run.code, run.out) == (2, "") and "cluster down" in run.err, run.err
    assert unknown.code == 2 and "unknown service 'nope'" in unknown.err
    assert anonymous.code == 2 and "needs a staff user's API token" in anonymous.err
    assert bad_commit.code == 2 and "commit: a commit SHA" in bad_commit.err
    assert "Traceback" not in run.err + unknown.err + anonymous.err + bad_commit.err
