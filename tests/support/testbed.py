"""Run a command inside the test bed: a fresh Redis and PostgreSQL on free ports.

    python -m tests.support.testbed [--sqlite] -- pytest -q

exports DATABASE_URL, CELERY_BROKER_URL and a throwaway SECRET_KEY to the command, and
stops the servers when it exits, whatever its outcome. With --sqlite the database is a
SQLite file instead (Redis still runs).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile

from tests.support.services import PostgresServer, RedisServer
from tests.support.stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sqlite", action="store_true", help="use SQLite, not PostgreSQL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run after --")

    with Stack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="gitops-static-"))
        redis = stack.start(RedisServer())
        postgres = None if args.sqlite else stack.start(PostgresServer())
        env = dict(os.environ)
        env["CELERY_BROKER_URL"] = redis.url
        env["CELERY_RESULT_BACKEND"] = redis.url
        env["SECRET_KEY"] = secrets.token_urlsafe(40)
        # Request threads of the live server must not keep connections open, or the test
        # database cannot be dropped at the end.
        env["DATABASE_CONN_MAX_AGE"] = "0"
        # Served from the apps' static folders (WhiteNoise finders); no collectstatic.
        env["STATIC_ROOT"] = scratch
        env.pop("DJANGO_DEBUG", None)
        # Tests write the file applyer's output under their tmp_path.
        env["GITOPS_FILE_APPLYER_ROOT"] = tempfile.gettempdir()
        env["GITOPS_RENDER_DIR"] = os.path.join(scratch, "rendered")
        if postgres is not None:
            env["DATABASE_URL"] = postgres.url
        else:
            path = os.path.join(tempfile.mkdtemp(prefix="gitops-sqlite-"), "db.sqlite3")
            env["DATABASE_URL"] = f"sqlite:///{path}"
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
