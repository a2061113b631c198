"""Create the first superuser for a laptop run, with a random password kept in a file.

Does nothing when any superuser exists, so it is safe at every start.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create a superuser 'admin' with a random password if no superuser exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--password-file", required=True, help="Where to write the generated password."
        )

    def handle(self, *args: Any, username: str, password_file: str, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(18)
        path = Path(password_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written before the user exists and readable by the owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        user_model.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"created superuser {username!r}; password written to {path}")
