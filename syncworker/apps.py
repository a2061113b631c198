from django.apps import AppConfig


class SyncworkerConfig(AppConfig):
    name = "syncworker"
    verbose_name = "GitOps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from syncworker import signals  # noqa: F401 - connects the receivers
