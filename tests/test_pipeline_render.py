"""The fetch stage on real repository layouts, through the real Git server: what a
service's build reads is recorded, and the next poll compares exactly those paths.

Stages run in this process (poll -> fetch -> apply with the file applyer); the same
flows through worker processes and the kube-apiserver are in
test_pipeline_kustomize_e2e.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from tests.support.gitserver import WorkingCopy
from tests.support.repo_files import EXAMPLES, disk_files

pytestmark = pytest.mark.django_db
Status = Deployment.Status
Reason = Deployment.Reason
PROD = "monorepo/apps/web/overlays/production"
STAGING = "monorepo/apps/web/overlays/staging"
SECRET_VALUES = ("s3cr3t-production-password", "tok-0123456789abcdef")


@pytest.fixture
def examples(git_repo: WorkingCopy, tmp_path: Path) -> tuple[Repository, WorkingCopy]:
    """The example layouts as one repository on the Git server, and the file applyer."""
    Cluster.objects.create(
        name="local", applyer="file", is_default=True, settings={"directory": str(tmp_path)}
    )
    git_repo.commit(dict(disk_files(EXAMPLES)), message="examples")
    repo = Repository.objects.create(key="examples", provider="git", url=git_repo.url)
    return repo, git_repo


def service(repo: Repository, name: str, directory: str, **options: Any) -> Service:
    return Service.objects.create(name=name, repository=repo, k8s_yaml_dir=directory, **options)


def sync(repo: Repository) -> list[Deployment]:
    """One poll, and what the fetch and apply workers then do, in queue order."""
    queued = poll_repository(repo.pk).deployments
    for pk in queued:
        fetch_and_render(pk)
    for pk in queued:
        apply_deployment(pk)
    return list(Deployment.objects.filter(pk__in=queued).order_by("pk"))


def deployed(repo: Repository) -> dict[str, str]:
    """Service name -> status of the deployments one sync made."""
    return {d.service.name: d.status for d in sync(repo)}


def test_a_shared_base_change_redeploys_both_overlays_and_a_change_elsewhere_neither(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, copy = examples
    service(repo, "web-prod", PROD, namespace="web")
    service(repo, "web-staging", STAGING, namespace="web-staging")
    assert deployed(repo) == {"web-prod": Status.SUCCEEDED, "web-staging": Status.SUCCEEDED}
    prod = Deployment.objects.get(service__name="web-prod")
    assert prod.paths_read == [
        "monorepo/apps/web/base",
        "monorepo/apps/web/overlays/production",
        "monorepo/components/monitoring",
    ]
    assert len(prod.tree_sha) == 64  # a key over the three paths, not one tree id

    copy.commit({"monorepo/apps/platform/team-a/quota.yaml": "# moved\n", "README.md": "x"})
    assert deployed(repo) == {}, "nothing either overlay reads changed"

    base = (EXAMPLES / "monorepo/apps/web/base/deployment.yaml").read_text()
    copy.commit({"monorepo/apps/web/base/deployment.yaml": base.replace("1.0.0", "1.0.1")})
    assert deployed(repo) == {"web-prod": Status.SUCCEEDED, "web-staging": Status.SUCCEEDED}

    copy.commit({"monorepo/components/monitoring/pod-monitor.yaml": "# gone\n"})
    changed = sync(repo)
    assert [d.service.name for d in changed] == ["web-prod"], "only prod uses the component"

    copy.commit({"monorepo/apps/web/overlays/staging/replicas.yaml": "# staging only\n"})
    assert [d.service.name for d in sync(repo)] == ["web-staging"]


def test_a_build_that_reads_a_new_base_is_compared_on_it_from_then_on(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, copy = examples
    service(repo, "web-staging", STAGING, namespace="web-staging")
    sync(repo)
    kfile = f"{STAGING}/kustomization.yaml"
    text = (EXAMPLES / kfile).read_text()
    copy.commit(
        {
            "monorepo/shared/extra/kustomization.yaml": "resources: [cm.yaml]\n",
            "monorepo/shared/extra/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: extra}\ndata: {v: '1'}\n",
            kfile: text.replace("- ../../base\n", "- ../../base\n- ../../../../shared/extra\n"),
        }
    )
    (added,) = sync(repo)
    assert added.status == Status.SUCCEEDED, added.error
    assert "monorepo/shared/extra" in added.paths_read

    copy.commit({"README.md": "unrelated"})
    assert deployed(repo) == {}, "the key stored matches what the next poll computes"
    copy.commit({"monorepo/shared/extra/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
                 "metadata: {name: extra}\ndata: {v: '2'}\n"})  # fmt: skip
    assert deployed(repo) == {"web-staging": Status.SUCCEEDED}


def test_a_plain_directory_is_redeployed_when_the_root_gitopsignore_appears(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, copy = examples
    service(repo, "guestbook", "kubernetes-examples/guestbook", recurse=False)
    (first,) = sync(repo)
    assert first.status == Status.SUCCEEDED, first.error
    assert first.paths_read == [".gitopsignore", "kubernetes-examples/guestbook"]
    assert first.object_count == 4

    copy.commit({".gitopsignore": "kubernetes-examples/guestbook/frontend-*.yaml\n"})
    (second,) = sync(repo)

    assert second.status == Status.SUCCEEDED, second.error
    assert sorted(r["name"] for r in second.applied_objects) == ["redis-master", "redis-master"]
    copy.commit({"README.md": "unrelated"})
    assert deployed(repo) == {}


def test_a_missing_base_fails_naming_the_entry_and_its_return_redeploys(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, copy = examples
    service(repo, "web-staging", STAGING)
    sync(repo)
    base = "monorepo/apps/web/base/"
    gone: dict[str, str | bytes | None] = {p: None for p in disk_files() if p.startswith(base)}
    copy.commit(gone)

    (failed,) = sync(repo)

    assert (failed.status, failed.reason) == (Status.FAILED, Reason.RENDER)
    assert f"{STAGING}/kustomization.yaml: resources[0]: '../../base'" in failed.error
    assert "monorepo/apps/web/base" in failed.paths_read
    restored: dict[str, str | bytes | None] = {
        p: data for p, data in disk_files().items() if p in gone
    }
    copy.commit(restored)
    assert deployed(repo) == {"web-staging": Status.SUCCEEDED}


def test_warnings_of_skipped_documents_are_stored_on_the_deployment(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, _ = examples
    service(repo, "cassandra", "kubernetes-examples/cassandra")

    (done,) = sync(repo)

    assert done.status == Status.SUCCEEDED, done.error
    assert sorted(r["kind"] for r in done.applied_objects) == ["Service", "StatefulSet"]
    assert len(done.warnings) == 1
    assert done.warnings[0].startswith("kubernetes-examples/cassandra/image/files/cassandra.yaml")


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        (
            "argocd-example-apps/helm-guestbook",
            "argocd-example-apps/helm-guestbook/Chart.yaml: a Helm chart",
        ),
        ("monorepo/components", "monorepo/components: no manifests"),
    ],
)
def test_what_cannot_be_rendered_fails_naming_the_file(
    examples: tuple[Repository, WorkingCopy], directory: str, expected: str
) -> None:
    repo, copy = examples
    copy.commit({"monorepo/components/README.md": "components are not deployed alone\n"})
    service(repo, "app", directory, recurse=False)

    (failed,) = sync(repo)

    assert (failed.status, failed.reason) == (Status.FAILED, Reason.RENDER)
    assert expected in failed.error
    assert failed.paths_read and failed.tree_sha


@pytest.mark.parametrize(
    ("kustomization", "named"),
    [
        (
            "resources:\n- github.com/argoproj/argocd-example-apps/guestbook?ref=master\n",
            "resources[0]: 'github.com/argoproj/argocd-example-apps/guestbook?ref=master': "
            "remote bases",
        ),
        (
            "resources:\n- https://raw.githubusercontent.com/acme/x/main/app.yaml\n",
            "resources[0]: 'https://raw.githubusercontent.com/acme/x/main/app.yaml': remote",
        ),
        (
            "resources: [cm.yaml]\ngenerators:\n- |-\n  apiVersion: someteam.example.com/v1\n"
            "  kind: SecretsFromVault\n  metadata: {name: x}\n",
            "generators[0]: (inline): exec and KRM function plugins are not run",
        ),
        (
            "resources: [cm.yaml]\ntransformers: [plugin.yaml]\n",
            "transformers[0]: plugin.yaml: exec and KRM function plugins are not run",
        ),
        ("resources:\n- ../../../etc\n", "resources[0]: '../../../etc' leaves the repository"),
    ],
)
def test_remote_bases_and_plugins_are_refused_naming_the_file_and_the_entry(
    examples: tuple[Repository, WorkingCopy], kustomization: str, named: str
) -> None:
    repo, copy = examples
    plugin = (
        "apiVersion: someteam.example.com/v1\nkind: ChartInflator\nmetadata: {name: x}\n"
        "annotations: {}\n"
    )
    copy.commit(
        {
            "apps/remote/kustomization.yaml": kustomization,
            "apps/remote/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
            "apps/remote/plugin.yaml": plugin,
        }
    )
    service(repo, "remote", "apps/remote")

    (failed,) = sync(repo)

    assert (failed.status, failed.reason) == (Status.FAILED, Reason.RENDER)
    assert f"apps/remote/kustomization.yaml: {named}" in failed.error


def test_secret_generator_values_appear_in_no_error_output_or_warning(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, copy = examples
    kfile = f"{PROD}/kustomization.yaml"
    broken = (EXAMPLES / kfile).read_text() + "patches:\n- path: missing-patch.yaml\n"
    copy.commit({kfile: broken})
    service(repo, "web-prod", PROD, namespace="web")

    (failed,) = sync(repo)

    assert (failed.status, failed.reason) == (Status.FAILED, Reason.RENDER)
    assert kfile in failed.error and "missing-patch.yaml" in failed.error
    record = f"{failed.error}\n{failed.output}\n{failed.warnings}"
    for value in SECRET_VALUES:
        assert value not in record
        assert base64.b64encode(value.encode()).decode() not in record

    copy.commit({kfile: (EXAMPLES / kfile).read_text()})
    (done,) = sync(repo)
    assert done.status == Status.SUCCEEDED, done.error
    record = f"{done.error}\n{done.output}\n{done.warnings}"
    assert "commonLabels" in record  # kustomize's deprecation warning, kept
    assert not any(value in record for value in SECRET_VALUES)


def test_the_namespace_to_create_comes_first_and_stays_out_of_the_inventory(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, _ = examples
    service(repo, "guestbook", "argocd-example-apps/guestbook", namespace="guestbook")
    service(repo, "quiet", "argocd-example-apps/kustomize-guestbook", create_namespace=False)

    done = {d.service.name: d for d in sync(repo)}

    first = next(yaml.safe_load_all(done["guestbook"].bundle))
    assert (first["kind"], first["metadata"]["name"]) == ("Namespace", "guestbook")
    assert first["metadata"]["annotations"]["simple-gitops.io/create-only"] == "true"
    assert "Namespace" not in {r["kind"] for r in done["guestbook"].applied_objects}
    assert done["guestbook"].object_count == 2
    assert "kind: Namespace" not in done["quiet"].bundle


def test_recurse_include_and_exclude_choose_between_alternative_folders(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, _ = examples
    guestbook = "kubernetes-examples/guestbook"
    service(repo, "everything", guestbook)
    service(repo, "own-files", guestbook, recurse=False, namespace="a")
    service(repo, "no-legacy", guestbook, exclude=["legacy/", "all-in-one/"], namespace="b")
    service(repo, "only-aio", guestbook, include=["all-in-one/guestbook-*.yaml"], namespace="c")

    done = {d.service.name: d for d in sync(repo)}

    assert done["everything"].status == Status.FAILED
    assert "also defined at" in done["everything"].error
    assert "recurse: false" in done["everything"].error
    for name in ("own-files", "no-legacy", "only-aio"):
        assert done[name].status == Status.SUCCEEDED, done[name].error
        kinds = sorted((r["kind"], r["name"]) for r in done[name].applied_objects)
        assert kinds == [
            ("Deployment", "frontend"),
            ("Deployment", "redis-master"),
            ("Service", "frontend"),
            ("Service", "redis-master"),
        ]


def test_json_manifests_deploy_beside_json_configuration(
    examples: tuple[Repository, WorkingCopy],
) -> None:
    repo, _ = examples
    service(repo, "api", "json-app")

    (done,) = sync(repo)

    assert done.status == Status.SUCCEEDED, done.error
    assert sorted((r["kind"], r["name"]) for r in done.applied_objects) == [
        ("ConfigMap", "api-config"),
        ("Deployment", "api"),
        ("Service", "api"),
        ("Service", "api-internal"),
    ]
    config = next(d for d in yaml.safe_load_all(done.bundle) if d["kind"] == "ConfigMap")
    assert sorted(config["data"]) == ["config_settings.json", "package.json"]
