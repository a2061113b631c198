"""Parsing and validating gitops-config.yaml: plain functions, no database."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncworker.config import ConfigError, GitopsConfig, load_config_file, parse_config

CONFIGS = Path(__file__).parent / "data" / "configs"
SECRET = "ghp_DoNotLeakThisToken0123456789"


def parse(text: str, **kwargs: object) -> GitopsConfig:
    return parse_config(textwrap.dedent(text), **kwargs)  # type: ignore[arg-type]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse(text)
    return excinfo.value.errors


# (case id, file text, one exact error expected among those reported). Shared with
# test_config_import, which feeds the same files to the management command.
REPO = "github_configs:\n  nokube: {repo_owner: AI-Infra-Team, repo_name: nokube}\n"
ERROR_CASES = [
    ("invalid-yaml", "services:\n  - name: etcd\n   github: nokube\n", "invalid YAML at line 3"),
    ("empty-file", "# nothing but a comment\n", "the file is empty"),
    ("top-level-not-mapping", "- name: etcd\n", "top level: expected a mapping, got a list"),
    ("unknown-top-level-key", REPO + "servcies: []\n", "servcies: unknown key"),
    (
        "unknown-key-in-entry",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: e, replicas: 2}\n",
        "services[0].replicas: unknown key",
    ),
    (
        "unknown-key-in-repository",
        "github_configs:\n  nokube: {repo_owner: a, repo_name: b, brnach: dev}\n",
        "github_configs.nokube.brnach: unknown key (did you mean 'branch'?)",
    ),
    (
        "missing-repo-name",
        "github_configs:\n  nokube: {repo_owner: AI-Infra-Team}\n",
        "github_configs.nokube.repo_name: required",
    ),
    (
        "branch-a-list",
        "github_configs:\n  nokube: {repo_owner: a, repo_name: b, branch: [main]}\n",
        "github_configs.nokube.branch: expected a string, got a list",
    ),
    (
        "poll-interval-a-string",
        REPO + "poll_interval: '60s'\n",
        "poll_interval: expected an integer, got a string",
    ),
    ("poll-interval-zero", REPO + "poll_interval: 0\n", "poll_interval: must be a positive"),
    ("poll-interval-negative", REPO + "poll_interval: -5\n", "poll_interval: must be a positive"),
    (
        "entry-poll-interval-zero",
        "github_configs:\n  nokube: {repo_owner: a, repo_name: b, poll_interval: 0}\n",
        "github_configs.nokube.poll_interval: must be a positive",
    ),
    (
        "prune-a-string",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: e, prune: 'no'}\n",
        "services[0].prune: expected true or false, got a string",
    ),
    (
        "drift-interval-too-short",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: e, drift_interval: 5}\n",
        "services[0].drift_interval: must be at least 10 seconds, got 5",
    ),
    (
        "self-heal-a-string",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: e, self_heal: 'on'}\n",
        "services[0].self_heal: expected true or false, got a string",
    ),
    (
        "services-not-a-list",
        REPO + "services:\n  etcd: {github: nokube}\n",
        "services: expected a list, got a mapping",
    ),
    (
        "service-missing-name",
        REPO + "services:\n  - {github: nokube, k8s_yaml_dir: e}\n",
        "services[0].name: required",
    ),
    (
        "service-missing-k8s-yaml-dir",
        REPO + "services:\n  - {name: etcd, github: nokube}\n",
        "services[0].k8s_yaml_dir: required",
    ),
    (
        "duplicate-service-names",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: a}\n"
        "  - {name: etcd, github: nokube, k8s_yaml_dir: b}\n",
        "services[1].name: duplicate service name 'etcd' (also services[0])",
    ),
    (
        "unknown-github-key",
        REPO + "services:\n  - {name: a, github: nokube, k8s_yaml_dir: a}\n"
        "  - {name: b, github: nokube, k8s_yaml_dir: b}\n"
        "  - {name: etcd, github: foo, k8s_yaml_dir: e}\n",
        "services[2].github: unknown repository key 'foo'",
    ),
    (
        "both-github-and-repo",
        REPO + "services:\n  - name: etcd\n    github: nokube\n"
        "    repo: https://github.com/AI-Infra-Team/nokube\n    k8s_yaml_dir: e\n",
        "services[0].repo: give either github or repo, not both",
    ),
    (
        "neither-github-nor-repo",
        REPO + "services:\n  - {name: etcd, k8s_yaml_dir: e}\n",
        "services[0].github: required (a github_configs key, or the legacy repo: URL)",
    ),
    (
        "legacy-repo-not-github",
        "services:\n  - {name: etcd, repo: 'https://gitlab.com/a/b', k8s_yaml_dir: e}\n",
        "services[0].repo: not a GitHub repository URL",
    ),
    (
        "legacy-repo-github-org-only",
        "services:\n  - {name: etcd, repo: 'https://github.com/AI-Infra-Team', k8s_yaml_dir: e}\n",
        "services[0].repo: not a GitHub repository URL",
    ),
    (
        "url-bad-scheme",
        "github_configs:\n  mirror: {url: 'ftp://git.example.com/a.git'}\n",
        "github_configs.mirror.url: unsupported scheme 'ftp' (use https, http or file)",
    ),
    (
        "url-no-path",
        "github_configs:\n  mirror: {url: 'https://git.example.com/'}\n",
        "github_configs.mirror.url: no repository path",
    ),
    (
        "url-not-a-url",
        "github_configs:\n  mirror: {url: 'git.example.com/a.git'}\n",
        "github_configs.mirror.url: not a URL (expected https://, http:// or file://)",
    ),
    (
        "url-github-but-not-a-repository",
        "github_configs:\n  mirror: {url: 'https://github.com/a/b/tree/main'}\n",
        "github_configs.mirror.url: not a GitHub repository URL",
    ),
    (
        "k8s-yaml-dir-dotdot",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: examples/../../etc}\n",
        "services[0].k8s_yaml_dir: 'examples/../../etc' must stay inside the repository",
    ),
    (
        "k8s-yaml-dir-absolute",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: /etc/kubernetes}\n",
        "services[0].k8s_yaml_dir: '/etc/kubernetes' must be relative to the repository root",
    ),
    (
        "invalid-service-name",
        REPO + "services:\n  - {name: Etcd_Main, github: nokube, k8s_yaml_dir: e}\n",
        "services[0].name: 'Etcd_Main' is not a DNS-1123 label",
    ),
    (
        "invalid-namespace",
        REPO + "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: e, namespace: Kube}\n",
        "services[0].namespace: 'Kube' is not a DNS-1123 label",
    ),
    (
        "two-applyers",
        REPO + "applyer_nokube: {nokube_download_url: 'https://example.com/nokube'}\n"
        "applyer_kubectl: {context: prod}\n",
        "applyer_kubectl: only one applyer may be configured, found applyer_nokube, "
        "applyer_kubectl",
    ),
    (
        "nokube-without-download-url",
        REPO + "applyer_nokube: {cluster_name: my-k8s-cluster}\n",
        "applyer_nokube.nokube_download_url: required",
    ),
    (
        "unknown-key-in-applyer",
        REPO + "applyer_file: {path: /tmp/out}\n",
        "applyer_file.path: unknown key",
    ),
    (
        "webhook-url-not-http",
        REPO + "webhook_url: 'mailto:ops@example.com'\n",
        "webhook_url: expected an http:// or https:// URL with a host",
    ),
    (
        "unreadable-token-file",
        "github_configs:\n  nokube: {repo_owner: a, repo_name: b, "
        "token_file: /nonexistent/gitops/token}\n",
        "github_configs.nokube.token_file: cannot read /nonexistent/gitops/token: "
        "No such file or directory",
    ),
    (
        "token-and-token-file",
        "github_configs:\n  nokube: {repo_owner: a, repo_name: b, token: x, token_file: /t}\n",
        "github_configs.nokube.token_file: give either token or token_file, not both",
    ),
    (
        "duplicate-yaml-key",
        "github_configs:\n  nokube: {repo_owner: a, repo_name: b}\n"
        "  nokube: {repo_owner: c, repo_name: d}\n",
        "invalid YAML at line 3, column 3: while constructing a mapping; "
        "found duplicate key 'nokube'",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_a_bad_file_is_refused_with_the_key_path_of_the_problem(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(error.startswith(expected) for error in errors), errors


def test_every_error_in_a_file_is_reported_at_once() -> None:
    errors = errors_of(
        """
        github_configs:
          nokube: {repo_owner: AI-Infra-Team}
        services:
          - {name: etcd, github: nokube, k8s_yaml_dir: /abs}
          - {name: Bad_Name, github: missing, k8s_yaml_dir: e}
          - {name: web, github: nokub, k8s_yaml_dir: w}
        poll_interval: 0
        colour: blue
        """
    )
    assert errors == [
        "colour: unknown key",
        "poll_interval: must be a positive number of seconds, got 0",
        "github_configs.nokube.repo_name: required (or give url)",
        "services[0].k8s_yaml_dir: '/abs' must be relative to the repository root, not absolute",
        "services[1].name: 'Bad_Name' is not a DNS-1123 label (lowercase letters, digits and "
        "'-', starting and ending with a letter or digit, at most 63 characters)",
        "services[1].github: unknown repository key 'missing'",
        "services[2].github: unknown repository key 'nokub' (did you mean 'nokube'?)",
    ]


def test_a_service_of_a_broken_entry_is_not_also_told_the_key_is_unknown() -> None:
    errors = errors_of(REPO.replace("repo_name: nokube", "repo_name: [x]") + SERVICES_ETCD)
    assert errors == ["github_configs.nokube.repo_name: expected a string, got a list"]


def test_invalid_yaml_names_the_line_and_column() -> None:
    errors = errors_of("github_configs:\n  nokube:\n    repo_owner: a\n   repo_name: b\n")
    assert len(errors) == 1
    assert errors[0].startswith("invalid YAML at line 4, column 4: ")


def test_the_seed_example_parses_with_the_seeds_defaults() -> None:
    config = load_config_file(CONFIGS / "seed-example.yaml")
    (repo,) = config.repositories
    assert (repo.key, repo.provider, repo.owner, repo.name) == (
        "nokube",
        "github",
        "AI-Infra-Team",
        "nokube",
    )
    assert repo.url == "https://github.com/AI-Infra-Team/nokube"
    assert (repo.branch, repo.poll_interval, repo.token) == ("main", 60, "ghp_your_token_here")
    assert [(s.name, s.repo_key, s.k8s_yaml_dir) for s in config.services] == [
        ("etcd", "nokube", "examples/etcd"),
        ("monitoring", "nokube", "examples/monitoring"),
    ]
    assert all(s.prune and not s.stateless and s.namespace == "" for s in config.services)
    assert (config.applyer.kind, config.applyer.cluster_name) == ("file", "default")
    assert not config.applyer.explicit
    assert config.webhook_url is None


SERVICES_ETCD = "services:\n  - {name: etcd, github: nokube, k8s_yaml_dir: e}\n"


def test_branch_defaults_to_main_and_poll_interval_to_sixty_seconds() -> None:
    (repo,) = parse(REPO).repositories
    assert (repo.branch, repo.poll_interval) == ("main", 60)
    assert repo.token is None
    assert repo.webhook_secret is None


def test_a_legacy_repo_url_reuses_the_entry_with_the_same_owner_and_name() -> None:
    config = parse(
        REPO + "services:\n"
        "  - {name: etcd, repo: 'https://github.com/ai-infra-team/NoKube.git', k8s_yaml_dir: e}\n"
    )
    assert [r.key for r in config.repositories] == ["nokube"]
    assert config.services[0].repo_key == "nokube"


def test_a_legacy_repo_url_without_an_entry_gets_a_derived_repository() -> None:
    config = parse(
        """
        services:
          - {name: etcd, repo: 'https://github.com/AI-Infra-Team/nokube', k8s_yaml_dir: a}
          - {name: monitoring, repo: 'https://github.com/AI-Infra-Team/nokube/', k8s_yaml_dir: b}
        poll_interval: 15
        """
    )
    (repo,) = config.repositories
    assert (repo.key, repo.provider, repo.owner, repo.name, repo.branch) == (
        "ai-infra-team-nokube",
        "github",
        "AI-Infra-Team",
        "nokube",
        "main",
    )
    assert (repo.url, repo.poll_interval) == ("https://github.com/AI-Infra-Team/nokube", 15)
    assert [s.repo_key for s in config.services] == ["ai-infra-team-nokube"] * 2


def test_a_legacy_repo_url_matching_two_entries_is_ambiguous() -> None:
    errors = errors_of(
        """
        github_configs:
          main: {repo_owner: o, repo_name: r}
          dev: {repo_owner: o, repo_name: r, branch: dev}
        services:
          - {name: etcd, repo: 'https://github.com/o/r', k8s_yaml_dir: e}
        """
    )
    assert errors == [
        "services[0].repo: ambiguous: github_configs entries main, dev are all o/r; "
        "use github: <key>"
    ]


def test_a_github_url_means_the_github_provider_with_owner_and_name_parsed() -> None:
    (repo,) = parse(
        "github_configs:\n  n: {url: 'https://github.com/AI-Infra-Team/nokube.git'}\n"
    ).repositories
    assert (repo.provider, repo.owner, repo.name) == ("github", "AI-Infra-Team", "nokube")
    assert repo.url == "https://github.com/AI-Infra-Team/nokube"


@pytest.mark.usefixtures("allow_file_repositories")
def test_any_other_git_url_means_the_git_provider() -> None:
    config = parse(
        """
        github_configs:
          a: {url: 'http://127.0.0.1:8080/git/team/app.git', branch: trunk}
          b: {url: 'file:///srv/git/app.git'}
        """
    )
    assert [(r.provider, r.url, r.owner, r.name) for r in config.repositories] == [
        ("git", "http://127.0.0.1:8080/git/team/app.git", "", ""),
        ("git", "file:///srv/git/app.git", "", ""),
    ]


def test_credentials_in_a_url_are_refused_without_quoting_them() -> None:
    errors = errors_of(f"github_configs:\n  a: {{url: 'https://x:{SECRET}@git.example.com/a'}}\n")
    assert errors == [
        "github_configs.a.url: must not contain credentials (use token or token_file)"
    ]


def test_api_url_means_github_enterprise_with_the_web_url_on_its_host() -> None:
    config = parse(
        """
        github_configs:
          ghe: {repo_owner: infra, repo_name: deploy, api_url: 'https://ghe.example.com/api/v3'}
          local: {repo_owner: o, repo_name: r, api_url: 'http://127.0.0.1:9000'}
          dotcom: {repo_owner: o, repo_name: r, api_url: 'https://api.github.com'}
        """
    )
    assert [(r.provider, r.api_url, r.url) for r in config.repositories] == [
        ("github", "https://ghe.example.com/api/v3", "https://ghe.example.com/infra/deploy"),
        ("github", "http://127.0.0.1:9000", "http://127.0.0.1:9000/o/r"),
        ("github", "https://api.github.com", "https://github.com/o/r"),
    ]


def test_a_repository_poll_interval_overrides_the_global_one() -> None:
    config = parse(
        """
        github_configs:
          a: {repo_owner: o, repo_name: a, poll_interval: 300}
          b: {repo_owner: o, repo_name: b}
        poll_interval: 20
        """
    )
    assert [r.poll_interval for r in config.repositories] == [300, 20]


@pytest.mark.usefixtures("allow_file_repositories")
def test_secret_files_are_read_relative_to_the_config_file_and_stripped() -> None:
    config = load_config_file(CONFIGS / "extensions.yaml")
    platform, enterprise, _local = config.repositories
    assert platform.token == "glpat-platform-token"
    assert enterprise.webhook_secret == "enterprise-hook-secret"
    assert enterprise.token is None


def test_an_empty_token_is_kept_as_an_explicit_clear() -> None:
    (repo,) = parse("github_configs:\n  n: {repo_owner: o, repo_name: r, token: ''}\n").repositories
    assert repo.token == ""


def test_k8s_yaml_dir_is_normalised_so_spelling_variants_are_one_value() -> None:
    config = parse(
        REPO + "services:\n"
        "  - {name: a, github: nokube, k8s_yaml_dir: ./examples//etcd/}\n"
        "  - {name: b, github: nokube, k8s_yaml_dir: .}\n"
    )
    assert [s.k8s_yaml_dir for s in config.services] == ["examples/etcd", "."]


def test_service_extensions_are_read() -> None:
    (service,) = parse(
        REPO + "services:\n  - {name: web, github: nokube, k8s_yaml_dir: w, namespace: shop,"
        " prune: false, stateless: true}\n"
    ).services
    assert (service.namespace, service.prune, service.stateless) == ("shop", False, True)


def test_wait_and_health_timeout_are_read_with_their_defaults() -> None:
    services = parse(
        REPO + "services:\n  - {name: a, github: nokube, k8s_yaml_dir: a}\n"
        "  - {name: b, github: nokube, k8s_yaml_dir: b, wait: false, health_timeout: 40}\n"
    ).services
    assert [(s.wait, s.health_timeout) for s in services] == [(True, 300), (False, 40)]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("health_timeout: 0", "services[0].health_timeout: must be at least 1 second, got 0"),
        ("health_timeout: soon", "services[0].health_timeout: expected an integer"),
        ("wait: maybe", "services[0].wait: expected true or false"),
    ],
)
def test_a_bad_wait_setting_names_its_key_path(entry: str, expected: str) -> None:
    errors = errors_of(
        REPO + f"services:\n  - {{name: a, github: nokube, k8s_yaml_dir: a, {entry}}}\n"
    )
    assert any(error.startswith(expected) for error in errors), errors


@pytest.mark.parametrize(
    ("text", "kind", "cluster_name", "settings"),
    [
        (
            "applyer_nokube: {cluster_name: my-k8s-cluster, nokube_download_url: 'https://e.x/n'}",
            "nokube",
            "my-k8s-cluster",
            {"nokube_download_url": "https://e.x/n"},
        ),
        ("applyer_kubernetes:", "kubernetes", "default", {}),
        (
            "applyer_kubectl: {kubeconfig: /k/config, context: prod}",
            "kubectl",
            "default",
            {"kubeconfig": "/k/config", "context": "prod"},
        ),
        ("applyer_file: {directory: /tmp/out}", "file", "default", {"directory": "/tmp/out"}),
    ],
    ids=["nokube", "kubernetes-bare", "kubectl", "file"],
)
def test_the_applyer_named_in_the_file_is_chosen(
    text: str, kind: str, cluster_name: str, settings: dict[str, str]
) -> None:
    applyer = parse(REPO + text + "\n").applyer
    assert (applyer.kind, applyer.cluster_name, applyer.settings) == (kind, cluster_name, settings)
    assert applyer.explicit


def test_secrets_never_appear_in_the_repr_of_the_parsed_config() -> None:
    config = parse(
        "github_configs:\n"
        f"  n: {{repo_owner: o, repo_name: r, token: {SECRET}, webhook_secret: {SECRET}x}}\n"
        f"webhook_url: 'https://hooks.example.com/{SECRET}'\n"
    )
    assert config.repositories[0].token == SECRET
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    "value",
    [
        f"[{SECRET}]",
        f"{{value: {SECRET}}}",
        f"'{SECRET} with spaces'",
        f"'{SECRET * 20}'",
        f'"{SECRET}',
        f"{SECRET}: nested",
    ],
    ids=["list", "mapping", "whitespace", "too-long", "unterminated-quote", "bad-indent"],
)
def test_a_malformed_token_is_never_quoted_in_an_error(value: str) -> None:
    text = f"github_configs:\n  n:\n    repo_owner: o\n    repo_name: r\n    token: {value}\n"
    for key in ("token", "webhook_secret"):
        with pytest.raises(ConfigError) as excinfo:
            parse_config(text.replace("token:", f"{key}:"))
        assert excinfo.value.errors
        assert SECRET not in str(excinfo.value)
        assert SECRET not in repr(excinfo.value)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config_file("/nonexistent/gitops-config.yaml")
    assert excinfo.value.errors == [
        "cannot read /nonexistent/gitops-config.yaml: No such file or directory"
    ]


def test_a_repository_may_restrict_namespaces_and_cluster_resources() -> None:
    config = parse_config(
        "github_configs:\n  shop:\n    url: https://git.example.com/shop.git\n"
        "    namespaces: [shop, 'shop-*']\n    cluster_resources: []\n"
    )
    (repo,) = config.repositories
    assert (repo.namespaces, repo.cluster_resources) == (("shop", "shop-*"), ())

    with pytest.raises(ConfigError) as caught:
        parse_config(
            "github_configs:\n  shop:\n    url: https://git.example.com/shop.git\n"
            "    namespaces: [Shop_EU]\n    cluster_resources: clusterrole\n"
        )
    assert caught.value.errors == [
        "github_configs.shop.namespaces: 'Shop_EU' is not a namespace name or pattern",
        "github_configs.shop.cluster_resources: expected a list, got a string",
    ]
