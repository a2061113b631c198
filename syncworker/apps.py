from django.apps import AppConfig


class SyncworkerConfig(AppConfig):
    name = "syncworker"
    verbose_name = "GitOps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from syncworker import signals

        post_migrate.connect(signals.schedule_sweep, sender=self)
