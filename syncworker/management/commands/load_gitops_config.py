"""``manage.py load_gitops_config [PATH] [--check]``: the seed's gitops-config.yaml into
the database. Thin: parsing lives in syncworker.config.schema, writing in .importer."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncworker.config import ConfigError, load_config_file
from syncworker.config.importer import UNCHANGED, import_config


class Command(BaseCommand):
    help = (
        "Load gitops-config.yaml (repositories, services, applyer, webhook_url) into the "
        "database. Idempotent; entries removed from the file are disabled, not deleted."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "path",
            nargs="?",
            help="the config file (default: settings.GITOPS['CONFIG_FILE'], "
            "i.e. GITOPS_CONFIG_FILE)",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="validate and show what would change, writing nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        configured = settings.GITOPS.get("CONFIG_FILE")
        path: str | None = options["path"] or (str(configured) if configured else None)
        if not path:
            raise CommandError("no config file: give PATH or set GITOPS_CONFIG_FILE")
        try:
            config = load_config_file(path)
        except ConfigError as exc:
            count = len(exc.errors)
            lines = "\n".join(f"  {error}" for error in exc.errors)
            raise CommandError(
                f"{path}: {count} error{'s' if count > 1 else ''}, nothing written\n{lines}"
            ) from None
        report = import_config(config, dry_run=options["check"])
        verbose = options["verbosity"] >= 2
        for change in report.changes:
            if verbose or change.action != UNCHANGED:
                self.stdout.write(f"  {change}")
        prefix = "check: " if report.dry_run else ""
        self.stdout.write(f"{prefix}{path}: {report.summary()}")
