"""The drift side of a service without a cluster: its beat schedule follows the row, its
phase spreads services over the interval, the config file and the API carry its keys."""

from __future__ import annotations

import textwrap

import pytest
from django_celery_beat.models import PeriodicTask

from syncworker.config import parse_config
from syncworker.models import Repository, Service
from syncworker.pipeline.schedules import drift_phase

pytestmark = pytest.mark.django_db


def test_each_service_has_a_drift_schedule_in_step_with_it() -> None:
    repo = Repository.objects.create(key="r", provider="git", url="file:///x.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    task = PeriodicTask.objects.get(name=f"gitops-drift:{service.pk}")
    assert (task.task, task.interval.every, task.enabled, task.queue) == (
        "syncworker.check_drift",
        300,
        True,
        "drift",
    )
    assert task.start_time is not None, "the first check waits for the service's phase"

    service.drift_interval, service.enabled = 30, False
    service.save()
    task.refresh_from_db()
    assert (task.interval.every, task.enabled, task.expire_seconds) == (30, False, 30)
    # Saves of drift results alone leave the schedule be.
    PeriodicTask.objects.filter(pk=task.pk).update(description="untouched")
    service.save(update_fields=["drift"])
    assert PeriodicTask.objects.get(pk=task.pk).description == "untouched"

    pk = service.pk
    service.delete()
    assert not PeriodicTask.objects.filter(name=f"gitops-drift:{pk}").exists()


def test_phases_spread_a_thousand_services_over_the_interval() -> None:
    phases = [drift_phase(pk, 300) for pk in range(1, 1001)]
    assert min(phases) >= 0 and max(phases) < 300
    per_30s = [sum(1 for p in phases if lo <= p < lo + 30) for lo in range(0, 300, 30)]
    assert max(per_30s) < 130, per_30s  # an even spread is 100 per 30 s


def test_the_config_file_sets_drift_interval_and_self_heal() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            github_configs:
              nokube: {repo_owner: a, repo_name: b}
            services:
              - {name: web, github: nokube, k8s_yaml_dir: w, drift_interval: 60, self_heal: true}
              - {name: db, github: nokube, k8s_yaml_dir: d}
            """
        )
    )
    web, db = config.services
    assert (web.drift_interval, web.self_heal) == (60, True)
    assert (db.drift_interval, db.self_heal) == (300, False)


def test_the_api_sets_drift_settings_and_shows_drift_read_only() -> None:
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(User.objects.create_user("ops", is_staff=True))
    repo = Repository.objects.create(key="r", provider="git", url="file:///x.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    drift = [{"kind": "ConfigMap", "namespace": "n", "name": "c", "state": "missing"}]
    Service.objects.filter(pk=service.pk).update(drift=drift, sync_status="out-of-sync")
    url = f"/api/services/{service.pk}/"
    answer = api.patch(url, {"drift_interval": 60, "self_heal": True, "drift": []}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["drift_interval"], body["self_heal"]) == (60, True)
    assert (body["drift"], body["sync_status"], body["health"]) == (drift, "out-of-sync", "unknown")
    too_short = api.patch(url, {"drift_interval": 3}, format="json")
    assert too_short.status_code == 400 and "drift_interval" in too_short.json()
