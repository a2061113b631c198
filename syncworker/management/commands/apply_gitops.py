"""``manage.py apply_gitops``: the ``apply-gitops`` console script as a management command,
with the same options and the same code (syncworker.deployrender.cli)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from syncworker.deployrender import cli


class Command(BaseCommand):
    help = (
        "Render the Kubernetes manifests that run Simple GitOps (--dry-run prints them) "
        "or apply them. Same as the apply-gitops command."
    )
    # Rendering reads no database and no model: the checks would only slow it down.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        code = cli.run(
            argparse.Namespace(**options),
            out=lambda text: self.stdout.write(text, ending=""),
            err=lambda text: self.stderr.write(text, ending=""),
        )
        if code:
            # The message is already on stderr; CommandError would print it again.
            raise SystemExit(code)
