"""Django settings, read from the environment (twelve-factor).

Every variable is listed in the README's configuration reference. Defaults are the
embedded ones that let the system run on a laptop: SQLite under ``var/`` and a local
Redis. Outside debug a SECRET_KEY must be given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gitops_site.env import env_bool, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("GITOPS_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", False)

_secret_key = env_str("SECRET_KEY", secret=True)
if not _secret_key:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) is required when DJANGO_DEBUG is off"
        )
    _secret_key = "insecure-debug-only-key"  # noqa: S105 - only reachable with DEBUG on
SECRET_KEY = _secret_key

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "syncworker.adminsite.GuardedAdminConfig",  # django.contrib.admin, guarded
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_celery_beat",
    "syncworker",
    "syncworker.dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gitops_site.urls"
WSGI_APPLICATION = "gitops_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database(url: str) -> dict[str, Any]:
    try:
        config: dict[str, Any] = dict(
            dj_database_url.parse(
                url,
                conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
                # Off by default: a check is one more statement per task and request; a
                # connection broken by an error is closed after that task anyway.
                conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", False),
            )
        )
    except Exception as exc:  # dj-database-url raises ValueError/KeyError on bad schemes
        # The URL may hold a password: name the variable and the scheme only.
        scheme = url.split(":", 1)[0]
        raise ImproperlyConfigured(
            f"DATABASE_URL: unsupported or malformed URL (scheme {scheme!r}): {type(exc).__name__}"
        ) from None
    if config.get("ENGINE") == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
        options = config.setdefault("OPTIONS", {})
        options["timeout"] = 20
        # Workers and the web process write at once: a transaction takes the write lock
        # when it begins, so the others wait up to the timeout; in SQLite's deferred mode
        # a read that turns into a write fails at once with "database is locked".
        options["transaction_mode"] = "IMMEDIATE"
    return config


DATABASE_URL = env_str("DATABASE_URL", secret=True) or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Compressed but not hashed: pages render even where collectstatic never ran
        # (tests, a fresh checkout); the admin's and the dashboard's assets are all we
        # serve, and the vendored htmx carries its version in its file name.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}

# Serve the admin's and the dashboard's assets straight from the installed apps when
# collectstatic has not run (a fresh checkout, tests); collected files win when they exist.
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PARSER_CLASSES": [
        "syncworker.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "syncworker.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Simple GitOps API",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Celery: the canonical wiring reads every CELERY_* name here (gitops_site/celery.py).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", secret=True) or "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", secret=True) or CELERY_BROKER_URL
CELERY_RESULT_EXPIRES = 3600
# The pipeline reads no task's result (stages hand off through the database), so none is
# stored; a caller that waits for one (ping, a test) asks with ignore_result=False.
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fix-up would close the database connections around every task;
# gitops_site/celery.py closes only those past DATABASE_CONN_MAX_AGE instead.
CELERY_DB_REUSE_MAX = 2**62
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "syncworker.poll_repository": {"queue": "poll"},
    "syncworker.fetch_services": {"queue": "fetch"},
    "syncworker.fetch_service": {"queue": "fetch"},
    "syncworker.apply_deployment": {"queue": "apply"},
    "syncworker.notify_deployment": {"queue": "default"},
    "syncworker.check_health": {"queue": "health"},
    "syncworker.check_drift": {"queue": "drift"},
}
# How long before Redis hands an unacknowledged task (its worker died) to another worker.
# Shorter than a task is safe here: tasks guard on the row's state and the cluster lock.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int(
        "CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 300, minimum=1
    )
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# The app's own settings, under one namespace; each default is here, documented in the README.
GITOPS: dict[str, Any] = {
    "CONFIG_FILE": env_str("GITOPS_CONFIG_FILE"),
    "ARTIFACTS_ROOT": env_path("GITOPS_ARTIFACTS_ROOT", VAR_DIR / "artifacts"),
    # URL prefix of an nginx internal location serving ARTIFACTS_ROOT (X-Accel-Redirect).
    "ARTIFACTS_ACCEL_REDIRECT": env_str("GITOPS_ARTIFACTS_ACCEL_REDIRECT") or "",
    "RENDER_DIR": env_path("GITOPS_RENDER_DIR", VAR_DIR / "rendered"),
    # Where a `file` applyer may write: its directory must be this or under it.
    "FILE_APPLYER_ROOT": env_path(
        "GITOPS_FILE_APPLYER_ROOT", env_path("GITOPS_RENDER_DIR", VAR_DIR / "rendered")
    ),
    # file:// repositories are refused unless the operator names the directory they live in.
    "FILE_REPOSITORY_ROOT": (
        env_path("GITOPS_FILE_REPOSITORY_ROOT", Path("/"))
        if env_str("GITOPS_FILE_REPOSITORY_ROOT")
        else None
    ),
    "WORKSPACE": env_path("GITOPS_WORKSPACE", VAR_DIR / "workspace"),
    "STATUS_API_PUBLIC": env_bool("GITOPS_STATUS_API_PUBLIC", True),
    # How long one process reuses a rendered /v1/gitops/repos answer (0: never).
    "STATUS_CACHE_SECONDS": env_int("GITOPS_STATUS_CACHE_SECONDS", 2, minimum=0),
    # Base URL pods of stateless services download init.sh and app.tar.gz from.
    "DOWNLOAD_BASE_URL": env_str("GITOPS_DOWNLOAD_BASE_URL") or "http://127.0.0.1:8000",
    # Lease of the per-cluster apply lock, renewed while an apply runs: how long a
    # crashed apply worker keeps the cluster locked.
    "APPLY_LOCK_TTL": env_int("GITOPS_APPLY_LOCK_TTL", 30, minimum=3),
    # How many deployments of one repository one fetch task renders: a monorepo commit
    # touching 10,000 services is 500 messages, and their directories are read at once.
    "FETCH_BATCH": env_int("GITOPS_FETCH_BATCH", 20, minimum=1),
    # Seconds between two health checks of a deployment waiting for its objects.
    "HEALTH_INTERVAL": env_int("GITOPS_HEALTH_INTERVAL", 5, minimum=1),
}

LOG_LEVEL = (env_str("LOG_LEVEL") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not a logging level")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
