"""Resume deployments whose task died with its worker or was lost with the broker.

Celery redelivers a task whose worker died (acks_late), but only after Redis' visibility
timeout, which must outlast the longest apply; and a message can be lost outright when
Redis restarts without persistence. Beat runs this sweep every 15 s (``schedules.SWEEP_SECONDS``);
the state guards of fetch and apply make a duplicate message harmless, so the sweep re-sends
whenever a deployment *may* have lost its message:

- ``applying`` while nobody holds its cluster's lease: the worker that applied it died
  (a live apply renews its lease every few seconds), so the apply is resumed once the
  lease has expired, not after the visibility timeout;
- the broker lost its data (our epoch marker in Redis is gone): every deployment that is
  not final gets its next task again;
- ``applying`` and waiting for health or for its PreSync or PostSync hooks more than a
  minute past its deadline: its check was lost (a live wait ends at the deadline), so the
  check is sent again; a deployment whose PreSync hooks succeeded is ``applying`` with no
  wait and no lease until the apply task takes it, so a lost apply is the case above;
- per cluster with a free lease, the oldest rendered deployment waiting longer than
  ``STALLED_SECONDS``, and any deployment waiting for its fetch longer than the task time
  limit while the fetch queue holds no message: a message stuck with a dead worker or
  dropped on the way. (A long backlog is not a lost message: 10,000 services of one
  commit wait in the queue for minutes, and re-sending them would only double it.)
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import IntegerField, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from syncworker.models import Cluster, Deployment
from syncworker.pipeline import handoff
from syncworker.pipeline.lease import lease_key
from syncworker.pipeline.redisconn import redis_client

log = logging.getLogger(__name__)
Status = Deployment.Status
STALLED_SECONDS = 60
EPOCH_KEY = "gitops:broker-epoch"
MAX_FETCHES_PER_SWEEP = 200
HEALTH_GRACE_SECONDS = 60


def requeue_stuck(*, older_than: timedelta | None = None) -> list[int]:
    """Queue the next task of every deployment that may have lost its own; return their
    ids. ``older_than`` overrides how long a fetch may wait before it is re-sent."""
    try:
        client = redis_client()
        if client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True):
            # The marker was missing: first sweep ever, or Redis lost every message.
            return _resend(Deployment.objects.filter(status__in=[Status.QUEUED, Status.APPLYING]))
        active = Deployment.objects.filter(status__in=[Status.QUEUED, Status.APPLYING])
        # A queued deployment without a cluster goes to the default one.
        default = Cluster.objects.filter(is_default=True).values_list("pk", flat=True).first()
        targets = active.order_by().values_list("cluster_id", flat=True).distinct()
        clusters = sorted({default if pk is None else pk for pk in targets} - {None})
        pipe = client.pipeline(transaction=False)
        for cluster_id in clusters:
            pipe.exists(lease_key(cluster_id))
        fetch_queue = settings.CELERY_TASK_ROUTES[handoff.FETCH]["queue"]
        # kombu's Redis transport keeps a queue as a list per priority step.
        for key in [fetch_queue, *(f"{fetch_queue}\x06\x16{step}" for step in (3, 6, 9))]:
            pipe.llen(key)
        answers = pipe.execute()
        held_leases, backlog = answers[: len(clusters)], sum(answers[len(clusters) :])
        free = [pk for pk, held in zip(clusters, held_leases, strict=True) if not held]
    except redis.RedisError as exc:
        log.warning("sweep skipped, Redis unavailable: %s", exc)
        return []
    now = timezone.now()
    stalled = now - timedelta(seconds=STALLED_SECONDS)
    fetch_grace = older_than or timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    on_free = Q(cluster_id__in=free) | (Q(cluster=None) if default in free else Q(pk__in=[]))
    oldest_waiting = (
        # Ready to apply, as the partial index deploy_ready has it (a queued deployment
        # never waits for health): the backlog of those clusters is what is read.
        Deployment.objects.filter(
            on_free, status=Status.QUEUED, health_deadline=None, queued_at__lt=stalled
        )
        .exclude(bundle_digest="")
        .annotate(target=Coalesce("cluster_id", Value(default), output_field=IntegerField()))
        .values("target")
        .annotate(first=Min("pk"))
        .values_list("first", flat=True)
    )
    # A health wait holds no lease; its check is lost only if overdue past the deadline.
    health_lost = Q(
        status=Status.APPLYING,
        health_deadline__lt=now - timedelta(seconds=HEALTH_GRACE_SECONDS),
    )
    lost = Deployment.objects.filter(
        Q(status=Status.APPLYING, cluster_id__in=free, health_deadline=None)
        | Q(pk__in=list(oldest_waiting))
        | health_lost
    )
    unrendered = Deployment.objects.filter(
        status=Status.QUEUED, bundle_digest="", queued_at__lt=now - fetch_grace
    ).order_by("pk")[: 0 if backlog else MAX_FETCHES_PER_SWEEP]
    return _resend(
        lost | Deployment.objects.filter(pk__in=list(unrendered.values_list("pk", flat=True)))
    )


def _resend(deployments: QuerySet[Deployment]) -> list[int]:
    requeued, fetches = [], []
    rows = deployments.values_list("pk", "status", "bundle_digest", "health_deadline")
    for pk, status, digest, health_deadline in rows.order_by("pk"):
        if status == Status.QUEUED and not digest:
            fetches.append(pk)
        elif health_deadline is not None:
            handoff.check_health(pk)
        else:
            handoff.apply(pk)
        requeued.append(pk)
    handoff.fetch(fetches)
    if requeued:
        log.warning("re-queued %d deployments: %s", len(requeued), requeued[:20])
    return requeued
