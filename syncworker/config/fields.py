"""Small typed readers and value checks for the config schema.

A ``Reader`` wraps one mapping of the file at a key path and records problems into a
shared list instead of raising, so that the schema can report every error in one go.
Messages name types and keys, never the offending value of a field that may be secret.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from syncworker import rules
from syncworker.yamlload import type_name

GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})


class Reader:
    """Typed access to one mapping of the file; a null value counts as not set."""

    def __init__(
        self, data: dict[Any, Any], path: str, errors: list[str], known: Iterable[str]
    ) -> None:
        self.data = data
        self.path = path
        self.errors = errors
        known = tuple(known)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(str(key), f"unknown key{hint}")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.at(key)}: {message}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def string(self, key: str, *, required: bool = False, max_length: int = 0) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "required")
            return None
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {type_name(value)}")
            return None
        if required and not value.strip():
            self.error(key, "must not be empty")
            return None
        if max_length and len(value) > max_length:
            self.error(key, f"longer than {max_length} characters")
            return None
        return value

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"expected an integer, got {type_name(value)}")
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {type_name(value)}")
            return default
        return value

    def mapping(self, key: str) -> dict[Any, Any] | None:
        value = self.data.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.error(key, f"expected a mapping, got {type_name(value)}")
        return None

    def sequence(self, key: str) -> list[Any] | None:
        value = self.data.get(key)
        if value is None or isinstance(value, list):
            return value
        self.error(key, f"expected a list, got {type_name(value)}")
        return None


def slugify_key(value: str) -> str:
    """A repository key derived from ``owner-repo``: lowercase, other characters to '-'."""
    return re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-")[:100]


def github_repo_from_url(url: str) -> tuple[str, str] | None:
    """``(owner, name)`` of ``https://github.com/<owner>/<repo>[.git][/]``, else None."""
    parts = rules.split_url(url)
    if (
        parts is None
        or parts.scheme not in {"https", "http"}
        or parts.hostname not in GITHUB_HOSTS
        or parts.username is not None
        or parts.port is not None
        or parts.query
        or parts.fragment
    ):
        return None
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 2:
        return None
    owner, name = segments
    name = name.removesuffix(".git")
    if not (_is_github_name(owner) and _is_github_name(name)):
        return None
    return owner, name


def owner_and_name(url: str) -> tuple[str, str] | None:
    """The last two path segments of any repository URL (GitHub Enterprise web URLs)."""
    parts = rules.split_url(url)
    segments = [s for s in (parts.path if parts else "").split("/") if s]
    if len(segments) < 2:
        return None
    owner, name = segments[-2], segments[-1].removesuffix(".git")
    return (owner, name) if _is_github_name(owner) and _is_github_name(name) else None


def web_url_from_api(api_url: str, owner: str, name: str) -> str:
    """The repository's web URL on the GitHub whose REST root is ``api_url``.

    github.com serves its API from api.github.com; GitHub Enterprise from
    ``https://host/api/v3``; anything else (a local GitHub-compatible server) is taken as
    serving repositories under its root.
    """
    parts = urlsplit(api_url)
    if parts.hostname == "api.github.com":
        return f"https://github.com/{owner}/{name}"
    root = re.sub(r"/api(/v3)?/?$", "", parts.path.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{root}/{owner}/{name}"


def _is_github_name(value: str) -> bool:
    try:
        rules.github_name(value)
    except rules.RuleError:
        return False
    return True


def check(reader: Reader, key: str, rule: Callable[[str], str], value: str) -> str | None:
    """``value`` through one of ``syncworker.rules``; a refusal is reported at ``key``."""
    try:
        return rule(value)
    except rules.RuleError as exc:
        reader.error(key, str(exc))
        return None
