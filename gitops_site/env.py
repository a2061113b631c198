"""Typed readers for settings from the environment.

Each helper fails loudly (ImproperlyConfigured naming the variable) on a value it cannot
use, so a typo in a deployment manifest stops the process at start-up instead of running
on a silent default. Secrets may come from ``NAME_FILE`` (a mounted Secret) instead of
``NAME``; the value itself never appears in an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, secret: bool = False) -> str | None:
    """Return NAME, or the contents of the file named by NAME_FILE, or default."""
    file_var = f"{name}_FILE"
    if file_var in os.environ:
        if name in os.environ:
            raise ImproperlyConfigured(f"set either {name} or {file_var}, not both")
        path = Path(os.environ[file_var])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{file_var}: cannot read {path}: {exc.strerror or exc}"
            ) from None
    value = os.environ.get(name)
    if value is None:
        return default
    if secret and not value.strip():
        raise ImproperlyConfigured(f"{name} is set but empty")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip():
        raise ImproperlyConfigured(f"{name} is set but empty")
    return Path(value).expanduser().resolve()
