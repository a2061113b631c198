"""The change-detection key of one service (syncworker.pipeline.changes)."""

from __future__ import annotations

from syncworker.models import Service
from syncworker.pipeline.changes import (
    APPLIED_SETTINGS,
    OTHER_SETTINGS,
    compared_paths,
    settings_digest,
    tree_key,
)

DIR, BASE, IGNORE = "apps/web/overlays/prod", "apps/web/base", ".gitopsignore"


def test_a_build_that_read_its_directory_alone_keeps_the_plain_tree_id() -> None:
    assert tree_key(DIR, {DIR: "a" * 40}) == "a" * 40
    assert tree_key(DIR, {DIR: "a" * 40, IGNORE: None}) == "a" * 40, "an absent file adds nothing"


def test_the_key_changes_with_any_path_read_and_only_with_those() -> None:
    ids = {DIR: "a" * 40, BASE: "b" * 40, IGNORE: None}
    key = tree_key(DIR, ids)

    assert key is not None and len(key) == 64
    assert tree_key(DIR, dict(ids)) == key
    assert tree_key(DIR, {**ids, BASE: "c" * 40}) != key, "the base changed"
    assert tree_key(DIR, {**ids, BASE: None}) != key, "the base is gone"
    assert tree_key(DIR, {**ids, IGNORE: "d" * 40}) != key, "a .gitopsignore appeared"
    swapped = {DIR: "b" * 40, BASE: "a" * 40, IGNORE: None}
    assert tree_key(DIR, swapped) != key, "ids are tied to their paths"


def test_a_missing_service_directory_has_no_key() -> None:
    assert tree_key(DIR, {DIR: None, BASE: "b" * 40}) is None


def test_the_service_directory_is_always_compared() -> None:
    assert compared_paths(DIR, []) == [DIR]
    assert compared_paths(DIR, ["apps/web", IGNORE]) == [IGNORE, "apps/web", DIR]


def test_every_setting_of_a_service_either_counts_as_applied_or_is_named_as_not() -> None:
    editable = {f.name for f in Service._meta.concrete_fields if f.editable and not f.primary_key}
    editable -= {"created_at", "updated_at"}

    assert editable == set(APPLIED_SETTINGS) | set(OTHER_SETTINGS)
    assert not set(APPLIED_SETTINGS) & set(OTHER_SETTINGS)


def test_the_settings_digest_follows_what_is_applied_and_only_that() -> None:
    service = Service(name="web", k8s_yaml_dir="apps/web", namespace="shop", include=["*.yaml"])
    digest = settings_digest(service)

    assert settings_digest(Service(**_fields(service))) == digest
    for name, value in [
        ("namespace", "other"),
        ("include", []),
        ("exclude", ["x"]),
        ("recurse", False),
        ("stateless", True),
        ("create_namespace", False),
        ("prune", False),
        ("cluster_id", 7),
        ("k8s_yaml_dir", "apps/api"),
        ("name", "api"),
    ]:
        assert settings_digest(Service(**{**_fields(service), name: value})) != digest, name
    for name, value in [("enabled", False), ("wait", False), ("health_timeout", 5)]:
        assert settings_digest(Service(**{**_fields(service), name: value})) == digest, name


def _fields(service: Service) -> dict[str, object]:
    return {
        "name": service.name,
        "k8s_yaml_dir": service.k8s_yaml_dir,
        "namespace": service.namespace,
        "include": service.include,
    }
