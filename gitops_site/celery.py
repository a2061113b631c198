"""The Celery application, wired the canonical way: settings under CELERY_*, tasks
discovered in installed apps.

Database connections in workers live as long as ``DATABASE_CONN_MAX_AGE`` says, as in
the web process. Celery's Django fix-up closes every connection before and after each
task unless ``CELERY_DB_REUSE_MAX`` is set (settings set it out of reach), which costs a
new PostgreSQL connection per task; instead each task starts and ends the way Django
starts and ends a request, with ``close_old_connections``: a connection past its age, or
broken by an error, is closed, and the next query opens a fresh one.
"""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

from gitops_site import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gitops_site.settings")
broker.install()  # before any connection: a worker must live through a Redis restart

app = Celery("gitops_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs: object) -> None:
    task = kwargs.get("task")
    if getattr(getattr(task, "request", None), "is_eager", False):
        return  # an eager task runs inside its caller's transaction and connection
    from django.db import close_old_connections

    close_old_connections()
