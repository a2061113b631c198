"""Query-string filters of the deployment history. A bad value is a 400 naming its
parameter, never a database error."""

from __future__ import annotations

from datetime import datetime, timezone

from django.db.models import QuerySet
from django.http import QueryDict
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError

from syncworker.kube.names import is_dns_label
from syncworker.models import Deployment

MAX_ID_DIGITS = 18  # below 2**63: every database compares it without overflow
TIME_FILTERS = (("since", "queued_at__gte"), ("until", "queued_at__lt"))


def _shown(value: str) -> str:
    return repr(value[:100])


def parse_moment(name: str, value: str) -> datetime:
    """An ISO 8601 date-time in UTC; one without an offset is read as UTC."""
    try:
        moment = parse_datetime(value)
    except ValueError:  # well formed but impossible: month 13, hour 99
        moment = None
    if moment is None:
        raise ValidationError(
            {name: f"not an ISO 8601 date-time: {_shown(value)} (e.g. 2026-01-31T12:00:00Z)"}
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # year 1 at +05:00 is before year 1 in UTC
        raise ValidationError({name: f"out of range: {_shown(value)}"}) from None


def filter_deployments(queryset: QuerySet[Deployment], params: QueryDict) -> QuerySet[Deployment]:
    """``service`` (id or name), ``status``, ``since`` and ``until``."""
    service = params.get("service")
    if service:
        # str.isdigit() is true for '²', which int() refuses: ASCII digits only.
        if service.isascii() and service.isdigit() and len(service) <= MAX_ID_DIGITS:
            queryset = queryset.filter(service_id=int(service))
        elif is_dns_label(service):
            queryset = queryset.filter(service__name=service)
        else:
            raise ValidationError({"service": f"not a service id or name: {_shown(service)}"})
    state = params.get("status")
    if state:
        if state not in Deployment.Status.values:
            raise ValidationError(
                {
                    "status": f"unknown status {_shown(state)}; one of "
                    + ", ".join(Deployment.Status.values)
                }
            )
        queryset = queryset.filter(status=state)
    for name, lookup in TIME_FILTERS:
        value = params.get(name)
        if value:
            queryset = queryset.filter(**{lookup: parse_moment(name, value)})
    return queryset
