from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """An app of its own so that its templates and static files are found."""

    name = "syncworker.dashboard"
    label = "dashboard"
    verbose_name = "GitOps dashboard"
