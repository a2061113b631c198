"""Settings come from the environment and fail loudly on a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gitops_site.env import env_bool, env_int, env_list, env_str

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings module in a fresh interpreter with exactly this environment."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-c", "import gitops_site.settings as s; print(s.DATABASES)"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
    )


def test_secret_key_is_required_outside_debug() -> None:
    result = load_settings()
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-a-mounted-secret\n")
    result = load_settings(SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr


def test_database_defaults_to_sqlite_under_var() -> None:
    result = load_settings(DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout
    assert str(ROOT / "var" / "db.sqlite3") in result.stdout


def test_a_malformed_database_url_names_the_variable_but_not_the_password() -> None:
    result = load_settings(DJANGO_DEBUG="1", DATABASE_URL="mongo://user:hunter2@db/x")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr


def test_a_bad_boolean_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG='maybe' is not a boolean"):
        env_bool("DJANGO_DEBUG", False)


def test_a_bad_integer_and_one_below_its_minimum_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "ten")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "0")
    with pytest.raises(ImproperlyConfigured, match="must be at least 1"):
        env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)


def test_a_secret_given_twice_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("file-value")
    monkeypatch.setenv("SOME_TOKEN", "env-value")
    monkeypatch.setenv("SOME_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_str("SOME_TOKEN", secret=True)
    assert "env-value" not in str(excinfo.value)
    assert "file-value" not in str(excinfo.value)


def test_an_unreadable_secret_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_TOKEN_FILE", "/nonexistent/token")
    with pytest.raises(ImproperlyConfigured, match="SOME_TOKEN_FILE: cannot read"):
        env_str("SOME_TOKEN", secret=True)


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", "gitops.example.com, localhost ,")
    assert env_list("ALLOWED_HOSTS", []) == ["gitops.example.com", "localhost"]


# Two workers' transactions on the embedded SQLite: the first reads, the second reads and
# writes, then the first writes. In SQLite's default deferred mode the first one's write
# fails at once with "database is locked" (waiting could deadlock, so SQLite does not).
SQLITE_RACE = """
import threading, time
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as c:
    c.execute("CREATE TABLE t (n integer)")
    c.execute("INSERT INTO t VALUES (0)")
read, errors = threading.Event(), []

def worker(first):
    try:
        if not first:
            read.wait()
        with transaction.atomic():
            with connection.cursor() as c:
                c.execute("SELECT n FROM t")
                if first:
                    read.set()
                    time.sleep(0.5)
                c.execute("UPDATE t SET n = n + 1")
    except Exception as exc:
        errors.append(str(exc))
    finally:
        read.set()
        connection.close()

threads = [threading.Thread(target=worker, args=(first,)) for first in (True, False)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with connection.cursor() as c:
    c.execute("SELECT n FROM t")
    print(errors, c.fetchone()[0])
"""


def run_on_embedded_sqlite(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new Python process with the settings on a fresh SQLite file."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "gitops_site.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_concurrent_transactions_on_the_embedded_sqlite_wait_instead_of_failing(
    tmp_path: Path,
) -> None:
    result = run_on_embedded_sqlite(SQLITE_RACE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "2"], result.stdout


WSGI_PROBE = """
import gc
from gitops_site import wsgi
from django.urls import get_resolver
print(gc.get_freeze_count(), 'url_patterns' in get_resolver().__dict__)
"""


def test_the_web_process_loads_its_url_conf_at_start_and_keeps_it_out_of_full_collections(
    tmp_path: Path,
) -> None:
    result = run_on_embedded_sqlite(WSGI_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    frozen, loaded = result.stdout.split()
    # The URL conf pulls in the admin, DRF and every view: far more than 50,000 objects.
    assert int(frozen) > 50_000, result.stdout
    assert loaded == "True", result.stdout
