"""YAML aliases in gitops-config.yaml itself: used with measure they are fine; a
"billion laughs" file, or one that contains itself, is refused at once, naming the key."""

from __future__ import annotations

import time

import pytest

from syncworker.config import ConfigError, parse_config
from syncworker.config.schema import MAX_VALUES

REPOS = "github_configs: {web: {repo_owner: acme, repo_name: web}}\n"


def bomb(levels: int) -> str:
    """``services`` holding 10**levels copies of one entry, in a few hundred bytes."""
    lines = ["x0: &x0 {name: web, github: web, k8s_yaml_dir: deploy}"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return REPOS + "services:\n  - " + "\n    ".join(lines) + "\n"


def test_aliases_used_with_measure_load_as_written():
    config = parse_config(
        REPOS + "services:\n"
        "  - {name: web, github: web, k8s_yaml_dir: &dir deploy/web, namespace: &ns shop}\n"
        "  - {name: api, github: web, k8s_yaml_dir: *dir, namespace: *ns}\n"
    )

    assert [(s.name, s.k8s_yaml_dir, s.namespace) for s in config.services] == [
        ("web", "deploy/web", "shop"),
        ("api", "deploy/web", "shop"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        bomb(9),  # 10**9 entries
        REPOS + "services: &loop [*loop]\n",
        "github_configs: &loop {web: *loop}\n",
    ],
    ids=["billion-laughs", "list-containing-itself", "mapping-containing-itself"],
)
def test_a_file_that_expands_without_bound_is_refused_at_once_naming_the_key(text):
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_config(text)

    assert time.monotonic() - started < 1
    [error] = caught.value.errors
    assert error.startswith(("services: ", "github_configs: "))
    assert error.endswith(
        f"expands to more than {MAX_VALUES} values (YAML aliases that "
        "repeat too often or contain themselves)"
    )


def test_a_large_file_without_aliases_is_not_mistaken_for_a_bomb():
    services = "".join(
        f"  - {{name: s{i}, github: web, k8s_yaml_dir: deploy/s{i}}}\n" for i in range(2000)
    )

    config = parse_config(REPOS + "services:\n" + services)

    assert len(config.services) == 2000
