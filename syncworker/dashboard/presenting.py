"""How the dashboard shows things: a state as a word, an icon and a colour (never colour
alone), a commit as a link to its Git host when the host is known, an error by its first
line. Plain functions, shared by the pages, the fragments and the JSON the CLI reads."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from syncworker.dashboard.vocabulary import State, state
from syncworker.models import Deployment, Repository, Service

Status = Deployment.Status


def deployment_state(status: str | None) -> State:
    return state(status)


def service_state(service: Service) -> State:
    """The state of a service's newest deployment (``last_status``, annotated by
    ``selectors.services_overview``), shown beside its health and sync status."""
    return deployment_state(getattr(service, "last_status", None))


# Commit pages of hosts whose URL layout is known; others get the short id without a link.
COMMIT_PATHS = {
    "github.com": "/commit/",
    "gitlab.com": "/-/commit/",
    "bitbucket.org": "/commits/",
    "codeberg.org": "/commit/",
}
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>[^/].*)$")


def repository_web_url(repository: Repository) -> str:
    """The repository's page on its Git host, without credentials, or "". An http(s)
    clone URL is its own page; an SSH one (``git@host:o/r.git``, ``ssh://``) has a page
    only on a host whose layout is known."""
    url = repository.url.strip()
    match = _SCP_LIKE.match(url) if "://" not in url else None
    scheme, host, path = "https", "", ""
    if match:
        host, path = match["host"], "/" + match["path"]
    else:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ssh", "git") and parts.hostname:
            host, path = parts.hostname, parts.path
            if parts.scheme in ("http", "https"):
                scheme = parts.scheme
                host += f":{parts.port}" if parts.port else ""
    path = path.rstrip("/").removesuffix(".git")
    github = repository.provider == Repository.Provider.GITHUB
    if github and not host and not repository.api_url:
        host, path = "github.com", f"/{repository.owner}/{repository.name}"
    if not host or not path.strip("/"):
        return ""
    if scheme == "https" and not url.startswith("https") and host not in COMMIT_PATHS:
        return ""  # an SSH URL of an unknown host: its web address cannot be guessed
    return f"{scheme}://{host}{path}"


def commit_url(repository: Repository, sha: str) -> str:
    """A link to the commit on its Git host when the host's layout is known, else ""."""
    base = repository_web_url(repository)
    if not base or not sha:
        return ""
    host = urlsplit(base).hostname or ""
    commit_path = COMMIT_PATHS.get(host)
    if commit_path is None and repository.provider == Repository.Provider.GITHUB:
        commit_path = "/commit/"  # GitHub Enterprise: GitHub's layout on its own host
    return f"{base}{commit_path}{sha}" if commit_path else ""


def can_roll_back(deployment: Deployment) -> bool:
    """Whether "Roll back to this" applies: the guard of ``actions.rollback``, which has
    the last word (a test keeps the two in step)."""
    return deployment.status == Status.SUCCEEDED and bool(deployment.bundle_digest)
