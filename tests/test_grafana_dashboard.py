"""deploy/grafana/simple-gitops.json graphs what /metrics really exports: every query of
every panel and variable names metrics a scrape of this server has, and only labels
those metrics carry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from syncworker.models import Deployment, Repository, Service
from syncworker.pipeline import metrics

pytestmark = pytest.mark.django_db
DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "simple-gitops.json"
# PromQL words that are not metric names (function names are told apart by their "(").
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def exported() -> dict[str, set[str]]:
    """Sample names of one scrape of /metrics (after a poll and a deployment were
    recorded, so that labelled families have samples) and the labels of each."""
    repo = Repository.objects.create(key="graphed", provider="git", url="file:///g.git")
    service = Service.objects.create(name="graphed", repository=repo, k8s_yaml_dir="g")
    Deployment.objects.create(service=service, commit_sha="1" * 40, status="succeeded")
    metrics.record_poll("graphed", ok=False)
    metrics.record_deployment("succeeded", reason="", seconds=0.3, repository="graphed")
    metrics.record_deployment("failed", reason="render", seconds=None, repository="graphed")
    body = Client().get("/metrics").content.decode()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, expression, legend) of every panel target and query variable."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"], target.get("legendFormat", "")))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"${variable['name']}", variable["definition"], ""))
    return found


def referenced(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors, $__rate_interval included
    labels = set(re.findall(r"(?:by|without|on|ignoring)\s*\(([^)]*)\)", text))
    label_names = {name.strip() for group in labels for name in group.split(",") if name.strip()}
    label_names |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", text))
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)
    match = re.fullmatch(r"\s*label_values\((\w+),\s*(\w+)\)\s*", expr)
    if match:
        return {match[1]}, {match[2]}
    text = re.sub(r"(?<![\w:])\d[\d.]*(?:[eE][+-]?\d+)?", "", text)  # numbers
    names = set()
    for word in re.finditer(r"[a-zA-Z_:][\w:]*", text):
        if text[word.end() :].lstrip().startswith("(") or word.group() in KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(word.group())
    return names, label_names


def test_every_query_names_metrics_that_metrics_exports_with_their_labels() -> None:
    samples = exported()
    dashboard = json.loads(DASHBOARD.read_text())

    found = queries(dashboard)
    assert len(found) >= 12
    for where, expr, legend in found:
        names, labels = referenced(expr)
        assert names, f"{where}: no metric in {expr!r}"
        missing = names - set(samples)
        assert not missing, f"{where}: {sorted(missing)} not exported by /metrics ({expr})"
        carried = set().union(*(samples[n] for n in names))
        labels |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert labels <= carried, f"{where}: labels {sorted(labels - carried)} not on {names}"


def test_the_check_itself_catches_a_metric_that_does_not_exist() -> None:
    samples = exported()

    names, labels = referenced('sum by (reason) (rate(gitops_deploys_total{status="x"}[5m]))')

    assert names == {"gitops_deploys_total"} and not names <= set(samples)
    assert labels == {"reason", "status"}


def test_the_dashboard_is_one_grafana_document_on_a_chosen_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]

    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
