"""Small typed readers and value checks for the config schema.

A ``Reader`` wraps one mapping of the file at a key path and records problems into a
shared list instead of raising, so that the schema can report every error in one go.
Messages name types and keys, never the offending value of a field that may be secret.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import SplitResult, urlsplit

GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # what Django's SlugField accepts
_GITHUB_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def type_name(value: Any) -> str:
    # bool before int: YAML's true is a Python int too.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    return type(value).__name__


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


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def is_slug(value: str) -> bool:
    return len(value) <= 100 and _SLUG.fullmatch(value) is not None


def is_github_name(value: str) -> bool:
    return len(value) <= 100 and value not in {".", ".."} and bool(_GITHUB_NAME.fullmatch(value))


def slugify_key(value: str) -> str:
    """A repository key derived from ``owner-repo``: lowercase, other characters to '-'."""
    return re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-")[:100]


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def check_web_url(url: str) -> str | None:
    """The problem with an http(s) endpoint URL, or None. Never quotes the URL: a
    notification URL often carries its secret in the path or query."""
    parts = _split(url)
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    return None


def check_repo_url(url: str) -> str | None:
    """The problem with a Git repository URL (https, http or file), or None."""
    parts = _split(url)
    if parts is None or not parts.scheme:
        return "not a URL (expected https://, http:// or file://)"
    if parts.scheme not in {"https", "http", "file"}:
        return f"unsupported scheme {parts.scheme!r} (use https, http or file)"
    if parts.username is not None or parts.password is not None:
        # The url column is shown by the status API; credentials go in token/token_file.
        return "must not contain credentials (use token or token_file)"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            return "file URLs need an absolute path (file:///path/to/repo.git)"
    elif not parts.hostname:
        return "no host"
    if not parts.path.strip("/"):
        return "no repository path"
    return None


def github_repo_from_url(url: str) -> tuple[str, str] | None:
    """``(owner, name)`` of ``https://github.com/<owner>/<repo>[.git][/]``, else None."""
    parts = _split(url)
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
    if not (is_github_name(owner) and is_github_name(name)):
        return None
    return owner, name


def owner_and_name(url: str) -> tuple[str, str] | None:
    """The last two path segments of any repository URL (GitHub Enterprise web URLs)."""
    parts = _split(url)
    segments = [s for s in (parts.path if parts else "").split("/") if s]
    if len(segments) < 2:
        return None
    owner, name = segments[-2], segments[-1].removesuffix(".git")
    return (owner, name) if is_github_name(owner) and is_github_name(name) else None


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


def yaml_dir(value: str) -> tuple[str | None, str | None]:
    """``(normalised path, None)`` or ``(None, problem)`` for a directory in the repo.

    Normalised so that ``examples/etcd/`` and ``./examples/etcd`` are one value and a
    reload does not see a change; "." is the repository root.
    """
    if not value.strip():
        return None, "must not be empty"
    if "\\" in value or "\0" in value:
        return None, f"{value!r} must be a POSIX path (no backslashes)"
    path = PurePosixPath(value)
    if path.is_absolute():
        return None, f"{value!r} must be relative to the repository root, not absolute"
    if ".." in path.parts:
        return None, f"{value!r} must stay inside the repository (no '..')"
    if len(str(path)) > 500:
        return None, "longer than 500 characters"
    return str(path), None
