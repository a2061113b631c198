"""What change detection over the paths a build read costs on the GitHub source (the
GitHub stand-in): a no-change poll stays one request, a moved head one more for the
whole tree whatever the number of paths, and a fetch whose build read what the poll
compared asks for no tree of the commit again."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncworker.models import Cluster, Deployment, Repository, Service
from syncworker.pipeline.deploying import apply_deployment
from syncworker.pipeline.fetching import fetch_and_render
from syncworker.pipeline.polling import poll_repository
from syncworker.sources.github import blob_cache
from tests.support.repo_files import disk_files
from tests.support.source_fixtures import GitHubRepo

pytestmark = pytest.mark.django_db
STAGING = "monorepo/apps/web/overlays/staging"
BASE = "monorepo/apps/web/base"


@pytest.fixture
def repo(github_repo: GitHubRepo, tmp_path: Path) -> Repository:
    Cluster.objects.create(
        name="local", applyer="file", is_default=True, settings={"directory": str(tmp_path)}
    )
    github_repo.copy.commit({p: d for p, d in disk_files().items() if p.startswith("monorepo/")})
    repo = Repository.objects.create(
        key="gh",
        provider=Repository.Provider.GITHUB,
        owner=github_repo.owner,
        name=github_repo.name,
        url=f"https://github.com/{github_repo.owner}/{github_repo.name}",
        api_url=github_repo.github.api_url,
    )
    Service.objects.create(name="web", repository=repo, k8s_yaml_dir=STAGING, namespace="web")
    return repo


def sync(repo: Repository) -> list[Deployment]:
    queued = poll_repository(repo.pk).deployments
    for pk in queued:
        fetch_and_render(pk)
        apply_deployment(pk)
    return list(Deployment.objects.filter(pk__in=queued))


def test_polls_cost_the_same_however_many_paths_a_build_read(
    repo: Repository, github_repo: GitHubRepo
) -> None:
    (first,) = sync(repo)
    assert first.status == Deployment.Status.SUCCEEDED, first.error
    assert first.paths_read == [BASE, STAGING]
    github = github_repo.github

    github.reset_counters()
    assert poll_repository(repo.pk).deployments == []
    assert [r.status for r in github.requests] == [304]

    text = Path(github_repo.copy.path, BASE, "service.yaml").read_text()
    head = github_repo.copy.commit({f"{BASE}/service.yaml": text.replace("80", "8081")})
    github.reset_counters()
    (queued,) = poll_repository(repo.pk).deployments
    assert [r.path.split("?")[0].rsplit("/", 1)[-1] for r in github.requests] == ["main", head]

    blob_cache.clear()
    github.reset_counters()
    fetch_and_render(queued)
    fetched = [r.path for r in github.requests]
    assert f"git/trees/{head}?recursive=1" not in " ".join(fetched), "the poll's key is kept"
    rendered = Deployment.objects.get(pk=queued)
    assert rendered.bundle_digest and rendered.paths_read == [BASE, STAGING]
    assert "port: 8081" in rendered.bundle
