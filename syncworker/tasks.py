"""Celery tasks: thin wrappers that take ids, re-read rows and call plain functions."""

from __future__ import annotations

import socket

from celery import shared_task

from syncworker.models import Repository


@shared_task(name="syncworker.ping")
def ping() -> dict[str, object]:
    """Answer from a worker with what it sees, so readiness checks and tests can tell
    that a worker is up and reads the same database."""
    return {"hostname": socket.gethostname(), "repositories": Repository.objects.count()}
