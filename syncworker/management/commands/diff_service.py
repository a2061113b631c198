"""``manage.py diff_service NAME [--commit SHA]``: what a sync of the service would change.

Exit status 1 when there is a difference, 0 when none, 2 when no diff could be made
(unknown service, bad commit, unreachable cluster), as ``diff(1)`` does.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from syncworker.models import Service
from syncworker.pipeline import diffing


class Command(BaseCommand):
    help = "Show what a sync of the service would change (server-side dry run); exit 1 if anything."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the service's name")
        parser.add_argument("--commit", help="commit SHA to render (default: the branch head)")

    def handle(self, *args: Any, **options: Any) -> None:
        raise SystemExit(self._run(options["name"], options["commit"]))

    def _run(self, name: str, commit: str | None) -> int:
        service = Service.objects.select_related("repository", "cluster").filter(name=name).first()
        if service is None:
            self.stderr.write(f"diff_service: no service named {name!r}")
            return 2
        if commit is not None and not diffing.is_commit_sha(commit.strip().lower()):
            self.stderr.write(f"diff_service: --commit {commit!r} is not a commit SHA")
            return 2
        try:
            result = diffing.diff_service(service, commit and commit.strip().lower())
        except diffing.DiffFailed as exc:
            self.stderr.write(f"diff_service: {exc}")
            return 2
        self.stdout.write(result.text(), ending="")
        return 1 if result.changed else 0
