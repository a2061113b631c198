"""The overview's filters, read from the query string: the newest deployment's status,
health, sync status, repository, cluster and a search by name. A value that is not one of
the choices is an error naming the parameter; the JSON the CLI reads takes the same
parameters through the same form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from syncworker.dashboard.vocabulary import HEALTH, STATES, SYNC
from syncworker.models import Service
from syncworker.selectors import (
    OVERVIEW_STATUSES,
    cluster_names,
    enabled_repository_keys,
    services_overview,
    with_overview_status,
)


class OverviewFilter(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Name",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "contains…"}),
    )
    status = forms.ChoiceField(required=False, label="Status")
    health = forms.ChoiceField(required=False, label="Health")
    sync = forms.ChoiceField(required=False, label="Sync")
    repository = forms.ChoiceField(required=False, label="Repository")
    cluster = forms.ChoiceField(required=False, label="Cluster")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        anything = [("", "any")]
        choices = {
            "status": [(s, STATES[s].label) for s in OVERVIEW_STATUSES],
            "health": [(h, HEALTH[h].label) for h in HEALTH],
            "sync": [(s, SYNC[s].label) for s in SYNC],
            "repository": [(k, k) for k in enabled_repository_keys()],
            "cluster": [(n, n) for n in cluster_names()],
        }
        for name, values in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = anything + values

    def selects(self) -> list[dict[str, Any]]:
        """The choice filters as the template draws them (name, label, choices, value)."""
        return [
            {
                "name": name,
                "label": self.fields[name].label,
                "choices": getattr(self.fields[name], "choices", []),
                "value": self[name].value() or "",
            }
            for name in ("status", "health", "sync", "repository", "cluster")
        ]

    def services(self) -> tuple[QuerySet[Service], QuerySet[Service]]:
        """(the services matching every filter, the same without the status, health and
        sync filters: what the counts per state are taken over). Call after ``is_valid()``."""
        data = self.cleaned_data
        unfiltered = services_overview(
            search=data.get("q", "").strip(),
            repository=data.get("repository", ""),
            cluster=data.get("cluster", ""),
        )
        services = unfiltered
        if data.get("status"):
            services = with_overview_status(services, data["status"])
        if data.get("health"):
            services = services.filter(health=data["health"])
        if data.get("sync"):
            services = services.filter(sync_status=data["sync"])
        return services, unfiltered

    def error_text(self) -> str:
        """``parameter: message`` for each bad parameter, on one line."""
        lists = self.error_lists()
        return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in lists.items())

    def error_lists(self) -> dict[str, list[str]]:
        return {name: [str(m) for m in messages] for name, messages in self.errors.items()}
