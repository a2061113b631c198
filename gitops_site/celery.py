"""The Celery application, wired the canonical way: settings under CELERY_*, tasks
discovered in installed apps."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gitops_site.settings")

app = Celery("gitops_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
