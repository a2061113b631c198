"""Real Redis and PostgreSQL servers on free loopback ports, for the test bed.

Each runs from a private temporary directory and is stopped (with its whole process
group) when the test run ends. Debian's packages provide the binaries; scripts/bootstrap
installs them on a fresh machine.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.procs import free_port, port_open, stop_process, wait_until


def _find_binary(name: str, patterns: list[str]) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    raise FileNotFoundError(f"{name} not found; run scripts/bootstrap to install it")


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gitops-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = _find_binary("redis-server", [])
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port), timeout=20, what="redis-server")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throwaway cluster: initdb, trust auth on loopback, one database."""

    def __init__(self, database: str = "gitops") -> None:
        self.port = free_port()
        self.database = database
        self.dir = Path(tempfile.mkdtemp(prefix="gitops-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres"

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self) -> dict[str, object]:
        # PostgreSQL refuses to run as root; the Debian package creates a postgres user.
        if os.geteuid() != 0:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
            return {}
        entry = pwd.getpwnam("postgres")
        os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        pattern = ["/usr/lib/postgresql/*/bin/{}"]
        initdb = _find_binary("initdb", [p.format("initdb") for p in pattern])
        postgres = _find_binary("postgres", [p.format("postgres") for p in pattern])
        owner = self._as_owner()
        data = self.dir / "data"
        subprocess.run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **owner,  # type: ignore[call-overload]
        )
        self.proc = subprocess.Popen(
            [
                postgres,
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.dir),
                # A test database need not survive a power cut; this makes it fast.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=open(self.dir / "postgres.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **owner,  # type: ignore[call-overload]
        )
        wait_until(self._ready, timeout=30, what="postgres")
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-qc",
                f"CREATE DATABASE {self.database}",
            ],
            check=True,
        )
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.dir / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres exited early:\n{log}")
        result = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-qAtc",
                "select 1",
            ],
            capture_output=True,
        )
        return result.returncode == 0

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
