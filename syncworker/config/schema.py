"""Parse and validate ``gitops-config.yaml`` into frozen dataclasses.

Every problem is collected, not just the first, each prefixed with its key path
(``services[2].github: unknown repository key 'foo'``), so one run shows everything to
fix. Secret values (tokens, webhook secrets) are never echoed: a message about one names
the key and the problem only. No database access here; ``importer`` does the writing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from syncworker import rules
from syncworker.config.fields import (
    GITHUB_HOSTS,
    Reader,
    check,
    github_repo_from_url,
    owner_and_name,
    slugify_key,
    web_url_from_api,
)
from syncworker.yamlload import StrictLoader, type_name

DEFAULT_BRANCH = "main"
DEFAULT_POLL_INTERVAL = 60
DEFAULT_CLUSTER_NAME = "default"

# Top-level key -> Cluster.applyer value. Exactly one may be present; none means the
# embedded default (a file applyer writing to settings.GITOPS["RENDER_DIR"]).
APPLYER_KEYS = {
    "applyer_nokube": "nokube",
    "applyer_kubernetes": "kubernetes",
    "applyer_kubectl": "kubectl",
    "applyer_file": "file",
}
_APPLYER_SETTINGS = {
    "nokube": ("nokube_download_url",),
    "kubernetes": ("kubeconfig", "context"),
    "kubectl": ("kubeconfig", "context"),
    "file": ("directory",),
}
_TOP_KEYS = (
    "github_configs",
    "services",
    "poll_interval",
    "webhook_url",
    "webhook_url_file",
    *APPLYER_KEYS,
)
_REPO_KEYS = (
    "repo_owner",
    "repo_name",
    "url",
    "api_url",
    "branch",
    "token",
    "token_file",
    "webhook_secret",
    "webhook_secret_file",
    "poll_interval",
    "namespaces",
    "cluster_resources",
)
_SERVICE_KEYS = (
    "name",
    "github",
    "repo",
    "k8s_yaml_dir",
    "namespace",
    "prune",
    "stateless",
    "recurse",
    "include",
    "exclude",
    "create_namespace",
    "wait",
    "health_timeout",
    "drift_interval",
    "self_heal",
)
DEFAULT_HEALTH_TIMEOUT = 300
DEFAULT_DRIFT_INTERVAL = 300
MIN_DRIFT_INTERVAL = 10


class ConfigError(Exception):
    """The file cannot be loaded; ``errors`` lists every problem with its key path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class RepoSpec:
    key: str
    provider: str  # Repository.Provider: "github" or "git"
    owner: str
    name: str
    url: str
    api_url: str
    branch: str
    poll_interval: int
    # Where its services may deploy (None: anywhere), as Argo CD projects restrict apps.
    namespaces: tuple[str, ...] | None = None
    cluster_resources: tuple[str, ...] | None = None
    # None means "not set in the file": the importer keeps what is stored, so a secret
    # entered in the admin survives a reload. "" clears it. Kept out of repr().
    token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    repo_key: str
    k8s_yaml_dir: str
    namespace: str = ""
    prune: bool = True
    stateless: bool = False
    recurse: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    create_namespace: bool = True
    wait: bool = True
    health_timeout: int = DEFAULT_HEALTH_TIMEOUT
    drift_interval: int = DEFAULT_DRIFT_INTERVAL
    self_heal: bool = False


@dataclass(frozen=True)
class ApplyerSpec:
    kind: str  # Cluster.Applyer value
    cluster_name: str = DEFAULT_CLUSTER_NAME
    settings: dict[str, str] = field(default_factory=dict)
    # False for the embedded default chosen because the file names no applyer.
    explicit: bool = True


@dataclass(frozen=True)
class GitopsConfig:
    repositories: tuple[RepoSpec, ...]
    services: tuple[ServiceSpec, ...]
    applyer: ApplyerSpec
    poll_interval: int = DEFAULT_POLL_INTERVAL
    # Kept out of repr(): a notification URL often carries its secret (Slack's do).
    webhook_url: str | None = field(default=None, repr=False)


_Loader = StrictLoader
# Far above any real file (a thousand services are some ten thousand values), far below
# what a YAML alias bomb expands to: "a: &a [x, x, …]  b: &b [*a, *a, …]  …".
MAX_VALUES = 100_000


def load_config_file(path: str | Path) -> GitopsConfig:
    """Read and parse a config file; relative ``*_file`` paths are relative to it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or type(exc).__name__}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"cannot read {path}: not UTF-8 text"]) from None
    return parse_config(text, base_dir=path.resolve().parent)


def parse_config(text: str, *, base_dir: Path | None = None) -> GitopsConfig:
    data = _load_yaml(text)
    if data is None:
        raise ConfigError(["the file is empty (expected github_configs, services, ...)"])
    if not isinstance(data, dict):
        raise ConfigError([f"top level: expected a mapping, got {type_name(data)}"])
    _check_expansion(data)
    errors: list[str] = []
    top = Reader(data, "", errors, _TOP_KEYS)
    poll_interval = _poll_interval(top) or DEFAULT_POLL_INTERVAL
    repos, declared_keys = _repositories(top, poll_interval, base_dir)
    services = _services(top, repos, declared_keys, poll_interval)
    applyer = _applyer(top)
    # A secret like a token: Slack's and most others carry their credential in the path.
    webhook_url = _secret(top, "webhook_url", "webhook_url_file", base_dir)
    if webhook_url is not None:
        from_file = top.has("webhook_url_file")
        check(top, "webhook_url_file" if from_file else "webhook_url", rules.web_url, webhook_url)
    if errors:
        raise ConfigError(errors)
    return GitopsConfig(
        repositories=tuple(repos.values()),
        services=tuple(services),
        applyer=applyer,
        poll_interval=poll_interval,
        webhook_url=webhook_url or None,
    )


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is the safe loader
    except yaml.MarkedYAMLError as exc:
        # Only PyYAML's short problem text and position: str(exc) may quote the offending
        # source line, and that line may hold a token.
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError([f"invalid YAML{where}: {problem}"]) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError([f"invalid YAML at line {line}: {exc.reason}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {type(exc).__name__}"]) from None


def _check_expansion(data: dict[Any, Any]) -> None:
    """Refuse a file whose aliases expand it beyond MAX_VALUES (or into a cycle).

    PyYAML shares an aliased value instead of copying it, so loading is cheap; but
    anything that walks or dumps the result (an error message, the rendered ConfigMap)
    would pay for every repetition. Counting the walk, with a budget, stops that here.
    """
    budget = MAX_VALUES
    for key, value in data.items():
        stack = [value]
        while stack:
            item = stack.pop()
            budget -= 1
            if budget < 0:
                raise ConfigError(
                    [
                        f"{key}: expands to more than {MAX_VALUES} values (YAML aliases that "
                        "repeat too often or contain themselves)"
                    ]
                )
            if isinstance(item, dict):
                stack.extend(item.values())
                budget -= len(item)  # the keys
            elif isinstance(item, list):
                stack.extend(item)


def _poll_interval(reader: Reader) -> int | None:
    value = reader.integer("poll_interval")
    # The column is a 32-bit PositiveIntegerField on PostgreSQL.
    if value is not None and not 1 <= value <= 2**31 - 1:
        reader.error("poll_interval", f"must be a positive number of seconds, got {value}")
        return None
    return value


def _repositories(
    top: Reader, poll_interval: int, base_dir: Path | None
) -> tuple[dict[str, RepoSpec], set[str]]:
    """Valid entries by key, and every key the file declares (valid or not), so that a
    service naming a broken entry is not also told that the key is unknown."""
    repos: dict[str, RepoSpec] = {}
    declared: set[str] = set()
    for key, entry in (top.mapping("github_configs") or {}).items():
        path = f"github_configs.{key}"
        if isinstance(key, str):
            declared.add(key)
        if not isinstance(key, str) or not _is_valid(rules.key, key):
            top.errors.append(
                f"{path}: invalid key (letters, digits, '-' and '_', at most 100 characters)"
            )
        elif not isinstance(entry, dict):
            top.errors.append(f"{path}: expected a mapping, got {type_name(entry)}")
        else:
            reader = Reader(entry, path, top.errors, _REPO_KEYS)
            if spec := _repository(reader, key, poll_interval, base_dir):
                repos[key] = spec
    return repos, declared


def _repository(r: Reader, key: str, poll_interval: int, base_dir: Path | None) -> RepoSpec | None:
    before = len(r.errors)
    owner = r.string("repo_owner", max_length=100)
    name = r.string("repo_name", max_length=100)
    url = r.string("url", max_length=500)
    api_url = r.string("api_url", max_length=500)
    branch = r.string("branch", required=r.has("branch"), max_length=255) or DEFAULT_BRANCH
    own_interval = _poll_interval(r)
    namespaces = _list_rule(r, "namespaces", rules.name_patterns)
    cluster_resources = _list_rule(r, "cluster_resources", rules.kind_list)
    token = _secret(r, "token", "token_file", base_dir)
    webhook_secret = _secret(r, "webhook_secret", "webhook_secret_file", base_dir)
    check(r, "branch", rules.branch, branch)
    for field_name, value in (("repo_owner", owner), ("repo_name", name)):
        if value is not None:
            check(r, field_name, rules.github_name, value)
    if api_url is not None:
        api_url = check(r, "api_url", rules.web_url, api_url)
    # Checked even after other errors, so that one run reports everything; but a url of
    # the wrong type must not also produce "repo_owner: required".
    identity = None if r.has("url") and url is None else _identity(r, owner, name, url, api_url)
    if identity is None or len(r.errors) > before:
        return None
    provider, owner, name, url = identity
    return RepoSpec(
        key=key,
        provider=provider,
        owner=owner,
        name=name,
        url=url,
        api_url=api_url or "",
        branch=branch,
        poll_interval=own_interval or poll_interval,
        namespaces=namespaces,
        cluster_resources=cluster_resources,
        token=token,
        webhook_secret=webhook_secret,
    )


def _identity(
    r: Reader, owner: str | None, name: str | None, url: str | None, api_url: str | None
) -> tuple[str, str, str, str] | None:
    """``(provider, owner, name, url)`` from the seed's owner/name or the ``url`` form."""
    if url is None:
        for field_name, value in (("repo_owner", owner), ("repo_name", name)):
            if value is None and not r.has(field_name):
                r.error(field_name, "required (or give url)")
        if owner is None or name is None:
            return None
        if api_url:
            return "github", owner, name, web_url_from_api(api_url, owner, name)
        return "github", owner, name, f"https://github.com/{owner}/{name}"
    if check(r, "url", rules.configured_repo_url, url) is None:
        return None
    on_github = github_repo_from_url(url)
    if on_github is not None:
        for field_name, given, parsed in zip(
            ("repo_owner", "repo_name"), (owner, name), on_github, strict=True
        ):
            if given is not None and given.lower() != parsed.lower():
                r.error(field_name, f"{given!r} does not match the url")
                return None
        owner, name = on_github
        return "github", owner, name, f"https://github.com/{owner}/{name}"
    if not api_url and urlsplit(url).hostname in GITHUB_HOSTS:
        r.error("url", "not a GitHub repository URL (expected https://github.com/<owner>/<repo>)")
        return None
    if api_url:
        # GitHub Enterprise or a local GitHub-compatible server: the API needs owner/name.
        parsed_pair = owner_and_name(url) or (None, None)
        owner, name = owner or parsed_pair[0], name or parsed_pair[1]
        if owner is None or name is None:
            r.error("repo_name" if owner else "repo_owner", "required (not found in url)")
            return None
        return "github", owner, name, url
    return "git", owner or "", name or "", url


def _list_rule(r: Reader, key: str, rule: Callable[[object], list[str]]) -> tuple[str, ...] | None:
    value = r.sequence(key)
    if value is None:
        return None
    try:
        return tuple(rule(value))
    except rules.RuleError as exc:
        r.error(key, str(exc))
        return None


def _secret(r: Reader, key: str, file_key: str, base_dir: Path | None) -> str | None:
    """The secret from ``key`` or from the file named by ``file_key``; None if neither.

    Messages name the key only: a malformed secret is still a secret.
    """
    value = r.string(key, max_length=500)
    file_name = r.string(file_key, required=r.has(file_key), max_length=1000)
    if r.has(key) and r.has(file_key):
        r.error(file_key, f"give either {key} or {file_key}, not both")
        return None
    source = key
    if file_name is not None:
        source = file_key
        path = Path(file_name)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            r.error(file_key, f"cannot read {path}: {exc.strerror or type(exc).__name__}")
            return None
        except UnicodeDecodeError:
            r.error(file_key, f"{path} is not UTF-8 text")
            return None
        if not value:
            r.error(file_key, f"{path} is empty")
            return None
        if len(value) > 500:
            r.error(file_key, "the secret is longer than 500 characters")
            return None
    if value and any(char.isspace() for char in value):
        r.error(source, "must not contain whitespace")
        return None
    return value


def _services(
    top: Reader, repos: dict[str, RepoSpec], declared: set[str], poll_interval: int
) -> list[ServiceSpec]:
    specs: list[ServiceSpec] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(top.sequence("services") or []):
        path = f"services[{index}]"
        if not isinstance(entry, dict):
            top.errors.append(f"{path}: expected a mapping, got {type_name(entry)}")
            continue
        r = Reader(entry, path, top.errors, _SERVICE_KEYS)
        before = len(r.errors)
        name = r.string("name", required=True)
        if name is not None and check(r, "name", rules.service_name, name) is None:
            name = None
        elif name is not None and name in first_seen:
            r.error("name", f"duplicate service name {name!r} (also services[{first_seen[name]}])")
        elif name is not None:
            first_seen[name] = index
        k8s_yaml_dir = r.string("k8s_yaml_dir", required=True)
        if k8s_yaml_dir is not None:
            k8s_yaml_dir = check(r, "k8s_yaml_dir", rules.service_dir, k8s_yaml_dir)
        namespace = r.string("namespace") or ""
        check(r, "namespace", rules.namespace, namespace)
        prune = r.boolean("prune", True)
        stateless = r.boolean("stateless", False)
        recurse = r.boolean("recurse", True)
        include = _list_rule(r, "include", rules.include_patterns) or ()
        exclude = _list_rule(r, "exclude", rules.exclude_patterns) or ()
        create_namespace = r.boolean("create_namespace", True)
        wait = r.boolean("wait", True)
        health_timeout = r.integer("health_timeout")
        if health_timeout is not None and health_timeout < 1:
            r.error("health_timeout", f"must be at least 1 second, got {health_timeout}")
        drift_interval = r.integer("drift_interval")
        if drift_interval is None:
            drift_interval = DEFAULT_DRIFT_INTERVAL
        elif not MIN_DRIFT_INTERVAL <= drift_interval <= 2**31 - 1:
            r.error(
                "drift_interval",
                f"must be at least {MIN_DRIFT_INTERVAL} seconds, got {drift_interval}",
            )
        self_heal = r.boolean("self_heal", False)
        repo_key = _service_repository(r, repos, declared, poll_interval)
        if len(r.errors) > before or name is None or k8s_yaml_dir is None or repo_key is None:
            continue
        specs.append(
            ServiceSpec(
                name,
                repo_key,
                k8s_yaml_dir,
                namespace,
                prune,
                stateless,
                recurse=recurse,
                include=include,
                exclude=exclude,
                create_namespace=create_namespace,
                wait=wait,
                health_timeout=health_timeout or DEFAULT_HEALTH_TIMEOUT,
                drift_interval=drift_interval,
                self_heal=self_heal,
            )
        )
    return specs


def _service_repository(
    r: Reader, repos: dict[str, RepoSpec], declared: set[str], poll_interval: int
) -> str | None:
    """The repository key of a service: its ``github`` key, or for the legacy ``repo:``
    URL the github_configs entry of that owner/name, else a repository derived for it
    (added to ``repos``)."""
    github = r.string("github")
    repo_url = r.string("repo")
    if r.has("github") and r.has("repo"):
        r.error("repo", "give either github or repo, not both")
        return None
    if github is not None:
        if github not in repos and github not in declared:
            close = difflib.get_close_matches(github, sorted(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            r.error("github", f"unknown repository key {github!r}{hint}")
        # A declared key missing from repos is a broken entry that reported its own errors.
        return github if github in repos else None
    if repo_url is None:
        if not r.has("github") and not r.has("repo"):
            r.error("github", "required (a github_configs key, or the legacy repo: URL)")
        return None
    on_github = github_repo_from_url(repo_url)
    if on_github is None:
        r.error("repo", "not a GitHub repository URL (expected https://github.com/<owner>/<repo>)")
        return None
    owner, name = on_github
    matches = [
        key
        for key, spec in repos.items()
        if spec.provider == "github"
        and not spec.api_url
        and (spec.owner.lower(), spec.name.lower()) == (owner.lower(), name.lower())
    ]
    if len(matches) > 1:
        r.error(
            "repo",
            f"ambiguous: github_configs entries {', '.join(matches)} are all "
            f"{owner}/{name}; use github: <key>",
        )
        return None
    if matches:
        return matches[0]
    key = slugify_key(f"{owner}-{name}")
    if not _is_valid(rules.key, key) or key in declared:
        r.error("repo", f"cannot derive a repository key for {owner}/{name}; use github: <key>")
        return None
    repos[key] = RepoSpec(
        key=key,
        provider="github",
        owner=owner,
        name=name,
        url=f"https://github.com/{owner}/{name}",
        api_url="",
        branch=DEFAULT_BRANCH,
        poll_interval=poll_interval,
    )
    return key


def _applyer(top: Reader) -> ApplyerSpec:
    present = [key for key in top.data if key in APPLYER_KEYS]
    if len(present) > 1:
        top.error(present[1], f"only one applyer may be configured, found {', '.join(present)}")
        return ApplyerSpec(kind="file", explicit=False)
    if not present:
        return ApplyerSpec(kind="file", explicit=False)
    key = present[0]
    kind = APPLYER_KEYS[key]
    # `applyer_kubernetes:` with nothing under it means that applyer with its defaults.
    raw = top.mapping(key) or {}
    r = Reader(raw, key, top.errors, ("cluster_name", *_APPLYER_SETTINGS[kind]))
    before = len(r.errors)
    cluster_name = r.string("cluster_name", max_length=100) or DEFAULT_CLUSTER_NAME
    check(r, "cluster_name", rules.key, cluster_name)
    settings: dict[str, str] = {}
    for name in _APPLYER_SETTINGS[kind]:
        value = r.string(name, required=kind == "nokube" or r.has(name), max_length=1000)
        if value is not None:
            settings[name] = value
    url = settings.get("nokube_download_url")
    if url is not None:
        check(r, "nokube_download_url", rules.web_url, url)
    elif len(r.errors) == before:
        _check_applyer_settings(r, kind, cluster_name, settings)
    return ApplyerSpec(kind=kind, cluster_name=cluster_name, settings=settings)


def _check_applyer_settings(
    r: Reader, kind: str, cluster_name: str, values: dict[str, str]
) -> None:
    """What the applyer registry refuses (the one reader of a cluster's settings, which
    the admin and the API call too), reported at the applyer's key."""
    from syncworker.applyers import ApplyerSettingsError, applyer_for
    from syncworker.models import Cluster

    try:
        applyer_for(Cluster(name=cluster_name, applyer=kind, settings=values))
    except ApplyerSettingsError as exc:
        r.errors.append(f"{r.path}: {exc}")


def _is_valid(rule: Callable[[str], str], value: str) -> bool:
    try:
        rule(value)
    except rules.RuleError:
        return False
    return True
