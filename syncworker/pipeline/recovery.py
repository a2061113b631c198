"""Re-queue deployments whose task message was lost.

Celery redelivers a task whose worker died (acks_late), but a message can still be lost
outright, e.g. when Redis restarts without persistence. Beat runs this sweep every
minute: a deployment that has sat queued or applying for longer than any task may run
gets its next task queued again. The state guards of fetch and apply make a duplicate
harmless, so the sweep can be generous.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from syncworker.models import Deployment
from syncworker.pipeline import handoff

log = logging.getLogger(__name__)
Status = Deployment.Status


def requeue_stuck(*, older_than: timedelta | None = None) -> list[int]:
    """Queue the next task of every stuck deployment; return their ids."""
    grace = older_than or timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    cutoff = timezone.now() - grace
    stuck = Deployment.objects.filter(
        Q(status=Status.QUEUED, queued_at__lt=cutoff)
        | Q(status=Status.APPLYING, started_at__lt=cutoff)
    ).values_list("pk", "status", "bundle_digest")
    requeued = []
    for pk, status, digest in stuck.order_by("pk"):
        if status == Status.QUEUED and not digest:
            handoff.fetch(pk)
        else:
            handoff.apply(pk)
        requeued.append(pk)
    if requeued:
        log.warning("re-queued %d stuck deployments: %s", len(requeued), requeued[:20])
    return requeued
