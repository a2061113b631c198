"""Migration 0009 records, on the rows a config file loaded before, the fields the file
set, so the API and the admin refuse those edits before the next load."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("syncworker", "0008_ready_index_owner_lookup")]
AFTER = [("syncworker", "0009_config_fields")]


def test_rows_loaded_before_get_the_fields_the_file_set_and_a_disabled_one_counts_as_left() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    repository = old.get_model("syncworker", "Repository")
    service = old.get_model("syncworker", "Service")
    loaded = repository.objects.create(key="apps", provider="git", url="u", managed_by_config=True)
    service.objects.create(name="web", repository=loaded, k8s_yaml_dir="w", managed_by_config=True)
    service.objects.create(
        name="gone", repository=loaded, k8s_yaml_dir="g", managed_by_config=True, enabled=False
    )
    service.objects.create(name="mine", repository=loaded, k8s_yaml_dir="m")

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    rows = dict(new.get_model("syncworker", "Service").objects.values_list("name", "config_fields"))
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert "namespace" in rows["web"] and "name" in rows["web"] and "cluster" not in rows["web"]
    assert (rows["gone"], rows["mine"]) == (["enabled"], [])
    assert "url" in new.get_model("syncworker", "Repository").objects.get().config_fields
