"""The overview's filters, read from the query string: status, repository, cluster and a
search by name. A value that is not one of the choices is an error naming the parameter;
the JSON the CLI reads takes the same parameters through the same form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from syncworker.dashboard.vocabulary import STATES
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
    repository = forms.ChoiceField(required=False, label="Repository")
    cluster = forms.ChoiceField(required=False, label="Cluster")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        anything = [("", "any")]
        choices = {
            "status": [(s, STATES[s].label) for s in OVERVIEW_STATUSES],
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
            for name in ("status", "repository", "cluster")
        ]

    def services(self) -> tuple[QuerySet[Service], QuerySet[Service]]:
        """(the services matching every filter, the same without the status filter: what
        the per-status counts are taken over). Call after ``is_valid()``."""
        data = self.cleaned_data
        unfiltered = services_overview(
            search=data.get("q", "").strip(),
            repository=data.get("repository", ""),
            cluster=data.get("cluster", ""),
        )
        status = data.get("status", "")
        return (with_overview_status(unfiltered, status) if status else unfiltered), unfiltered

    def error_text(self) -> str:
        """``parameter: message`` for each bad parameter, on one line."""
        lists = self.error_lists()
        return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in lists.items())

    def error_lists(self) -> dict[str, list[str]]:
        return {name: [str(m) for m in messages] for name, messages in self.errors.items()}
