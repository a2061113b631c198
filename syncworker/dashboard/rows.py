"""What one line of the overview or of a service's history shows, computed once in Python
so the templates and the JSON stay dumb."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from syncworker.dashboard.presenting import (
    State,
    can_roll_back,
    commit_url,
    deployment_state,
    service_state,
)
from syncworker.dashboard.vocabulary import first_line, health_state, sync_state
from syncworker.models import Deployment, Repository, Service


@dataclass
class ServiceRow:
    service: Service
    state: State
    deployment: Deployment | None  # the newest one
    commit: str  # of the newest deployment, else what was last applied
    commit_link: str
    error_line: str
    reason: str  # why the newest deployment ended as it did, in words ("" when no reason)
    health: State
    sync: State
    health_line: str  # the first line of the health message, unless healthy

    @property
    def repository(self) -> Repository:
        return self.service.repository

    @property
    def when(self) -> datetime | None:
        """When the newest deployment finished, started or was queued (the latest known)."""
        d = self.deployment
        return (d.finished_at or d.started_at or d.queued_at) if d else None


@dataclass
class HistoryRow:
    deployment: Deployment
    state: State
    commit_link: str
    can_roll_back: bool
    pruned_count: int
    reason: str

    @property
    def waited_seconds(self) -> float | None:
        d = self.deployment
        return (d.started_at - d.queued_at).total_seconds() if d.started_at else None

    @property
    def took_seconds(self) -> float | None:
        duration = self.deployment.duration
        return duration.total_seconds() if duration is not None else None


def service_row(service: Service) -> ServiceRow:
    """``service`` carries ``last_deployment`` (selectors.attach_last_deployments)."""
    deployment: Deployment | None = getattr(service, "last_deployment", None)
    commit = deployment.commit_sha if deployment else service.last_applied_commit
    return ServiceRow(
        service=service,
        state=service_state(service),
        deployment=deployment,
        commit=commit,
        commit_link=commit_url(service.repository, commit),
        error_line=first_line(deployment.error) if deployment and deployment.error else "",
        reason=deployment.get_reason_display() if deployment and deployment.reason else "",
        health=health_state(service.health),
        sync=sync_state(service.sync_status),
        health_line=""
        if service.health == Service.Health.HEALTHY
        else first_line(service.health_message),
    )


def history_row(repository: Repository, deployment: Deployment) -> HistoryRow:
    return HistoryRow(
        deployment=deployment,
        state=deployment_state(deployment.status),
        commit_link=commit_url(repository, deployment.commit_sha),
        can_roll_back=can_roll_back(deployment),
        pruned_count=len(deployment.pruned_objects or []),
        reason=deployment.get_reason_display() if deployment.reason else "",
    )
