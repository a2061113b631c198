"""A real ``celery beat`` process with django-celery-beat's database scheduler, on the
test database and behind the loopback-only network guard: what drives the polls and the
recovery sweep in production."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.procs import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent


@contextmanager
def beat_process(database_url: str, env: dict[str, str] | None = None) -> Iterator[Path]:
    """Run beat until the block ends; yields its log file."""
    log = ROOT / "var" / f"test-beat-{os.getpid()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gitops-beat-") as scratch:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.netguard", "celery", "-A", "gitops_site", "beat",
             "--loglevel", "INFO",
             "-S", "django_celery_beat.schedulers:DatabaseScheduler",
             "--pidfile", os.path.join(scratch, "beat.pid")],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield log
        finally:
            stop_process(proc, timeout=10)
