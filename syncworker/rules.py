"""What a valid repository and service are: one rule per fact, for every door.

The config file (``syncworker/config``), the admin and the REST API (through the model
fields' validators and ``Model.clean``) and the pipeline all call these functions, so a
value one door accepts is never refused by another, nor by the pipeline later. Each
check returns the normalised value or raises ``RuleError`` with a message that names
the problem; messages never quote a value that may be a secret (URLs may carry one).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from syncworker.kube.names import DNS_LABEL_RULE, is_dns_label


class RuleError(ValueError):
    """The value breaks a rule; the message says which."""


_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_GITHUB_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# git check-ref-format: no control characters, space, ~ ^ : ? * [ \ anywhere.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_DIR_LENGTH = 500
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 500


def service_name(value: str) -> str:
    """Service names become label values and object names (``<name>-config``)."""
    if not is_dns_label(value):
        raise RuleError(f"{value!r} is not {DNS_LABEL_RULE}")
    return value


def namespace(value: str) -> str:
    """A namespace name; empty means "objects keep their own"."""
    if value and not is_dns_label(value):
        raise RuleError(f"{value!r} is not {DNS_LABEL_RULE}")
    return value


def key(value: str) -> str:
    """A repository key (the seed's ``github_configs`` key) or a cluster name."""
    if len(value) > 100 or not _SLUG.fullmatch(value):
        raise RuleError(
            f"{value!r} is not a valid key (letters, digits, '-' and '_', at most 100 characters)"
        )
    return value


def github_name(value: str) -> str:
    """A GitHub owner or repository name."""
    if len(value) > 100 or value in {".", ".."} or not _GITHUB_NAME.fullmatch(value):
        raise RuleError(f"{value!r} is not a valid owner or repository name")
    return value


def name_patterns(value: object) -> list[str]:
    """A list of namespace names or shell-style patterns (``shop``, ``team-*``)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError("expected a list of namespace names or patterns")
    for pattern in value:
        if not re.fullmatch(r"[a-z0-9*?\[\]-]{1,63}", pattern):
            raise RuleError(f"{pattern!r} is not a namespace name or pattern")
    return value


def kind_list(value: object) -> list[str]:
    """A list of kinds (``ClusterRole``), group-qualified kinds or ``*``."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError("expected a list of kinds")
    for kind in value:
        if not re.fullmatch(r"\*|([a-z0-9.-]+/)?[A-Z][A-Za-z0-9]*", kind):
            raise RuleError(f"{kind!r} is not a kind (ClusterRole, group/Kind or *)")
    return value


def include_patterns(value: object) -> list[str]:
    """A service's ``include``: gitignore-style patterns of the files to read."""
    return _gitignore_patterns(value)


def exclude_patterns(value: object) -> list[str]:
    """A service's ``exclude``: gitignore-style patterns of the files to leave out."""
    return _gitignore_patterns(value)


def _gitignore_patterns(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError("expected a list of gitignore-style patterns (strings)")
    if len(value) > MAX_PATTERNS:
        raise RuleError(f"more than {MAX_PATTERNS} patterns")
    # Imported here: the render package builds on this module. The render reads the
    # patterns with the same function, so what passes here renders.
    from syncworker.render.tree import pattern_problem

    problems = []
    for index, pattern in enumerate(value):
        if len(pattern) > MAX_PATTERN_LENGTH:
            problems.append(f"item {index}: longer than {MAX_PATTERN_LENGTH} characters")
        elif problem := pattern_problem(pattern):
            problems.append(f"item {index} ({pattern!r}) is {problem}")
    if problems:
        raise RuleError("; ".join(problems))
    return value


def repo_path(value: str) -> str:
    """A directory inside the repository, canonical: no leading, trailing or doubled
    slashes, no ``.`` parts; ``""`` is the repository root. Refuses everything that could
    name a place outside the repository (absolute paths, ``..``, backslashes,
    percent-escapes that a Git host would decode)."""
    if "\\" in value or "\0" in value:
        raise RuleError(f"{value!r} must be a POSIX path (no backslashes)")
    if value.startswith("/"):
        raise RuleError(f"{value!r} must be relative to the repository root, not absolute")
    if _PERCENT_ESCAPE.search(value):
        raise RuleError(f"{value!r} must not contain percent-escapes")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RuleError(f"{value!r} must stay inside the repository (no '..')")
    path = "/".join(parts)
    if len(path) > MAX_DIR_LENGTH:
        raise RuleError(f"longer than {MAX_DIR_LENGTH} characters")
    return path


def service_dir(value: str) -> str:
    """A service's ``k8s_yaml_dir`` as stored: ``repo_path`` with ``.`` for the root, so
    that ``examples/etcd/`` and ``./examples/etcd`` are one value."""
    if not value.strip():
        raise RuleError("must not be empty ('.' is the repository root)")
    return repo_path(value) or "."


def branch(value: str) -> str:
    """A branch name as ``git check-ref-format --branch`` accepts it (and never one that
    could be read as an option of a git command)."""
    if (
        not value
        or len(value) > 255
        or value.startswith(("-", "/"))
        or value.endswith(("/", ".", ".lock"))
        or ".." in value
        or "//" in value
        or "@{" in value
        or value == "@"
        or _REF_FORBIDDEN.search(value)
        or any(part.startswith(".") for part in value.split("/"))
    ):
        raise RuleError(f"{value!r} is not a valid branch name")
    return value


def split_url(url: str) -> SplitResult | None:
    """``urlsplit`` that answers None instead of raising on a malformed URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def host_only(url: str) -> str:
    """How a URL that may carry a secret is shown, wherever it is shown (pages, logs, the
    config import's plan): scheme and host only, since a webhook's path or query is often
    its secret, and its user and password are."""
    parts = split_url(url)
    if parts is None:
        return "(not a URL)"
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def web_url(value: str) -> str:
    """An http(s) endpoint (API root, notification target, download URL)."""
    parts = split_url(value)
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise RuleError("expected an http:// or https:// URL with a host")
    return value


def repo_url(value: str, *, file_root: Path | None) -> str:
    """A Git repository URL: https or http, or ``file://`` under ``file_root`` when the
    operator allowed local repositories (``GITOPS_FILE_REPOSITORY_ROOT``)."""
    parts = split_url(value)
    if parts is None or not parts.scheme:
        raise RuleError("not a URL (expected https://, http:// or file://)")
    if parts.scheme not in {"https", "http", "file"}:
        raise RuleError(f"unsupported scheme {parts.scheme!r} (use https, http or file)")
    if parts.username is not None or parts.password is not None:
        # The url column is shown by the status API; credentials go in token/token_file.
        raise RuleError("must not contain credentials (use token or token_file)")
    if parts.query or parts.fragment:
        raise RuleError("must not have a query or fragment")
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise RuleError("file URLs need an absolute path (file:///path/to/repo.git)")
        if file_root is None:
            raise RuleError(
                "file:// repositories are not allowed here (set GITOPS_FILE_REPOSITORY_ROOT)"
            )
        if not is_under(Path(parts.path), file_root):
            raise RuleError(f"file:// repositories must be under {file_root}")
    elif not parts.hostname:
        raise RuleError("no host")
    if not parts.path.strip("/"):
        raise RuleError("no repository path")
    return value


def configured_repo_url(value: str) -> str:
    """``repo_url`` under this installation's ``GITOPS_FILE_REPOSITORY_ROOT``."""
    from django.conf import settings

    return repo_url(value, file_root=settings.GITOPS["FILE_REPOSITORY_ROOT"])


def is_under(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved, links followed) is ``root`` or inside it."""
    resolved, base = path.expanduser().resolve(), root.expanduser().resolve()
    return resolved == base or base in resolved.parents


def local_directory(value: str, *, root: Path) -> str:
    """A directory on the server's disk that the ``file`` applyer may write to."""
    if not is_under(Path(value), root):
        raise RuleError(f"must be under {root} (GITOPS_FILE_APPLYER_ROOT)")
    return value


def storable_json(value: object) -> object:
    """JSON that every database can store: PostgreSQL's ``jsonb`` refuses a NUL character
    in any string (a key or a value), so it is refused here with where it is."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:  # not recursive: a deeply nested value must not exhaust the stack
        where, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                path = f"{where}.{key}" if where else str(key)
                if "\x00" in str(key):
                    raise RuleError(f"{path!r}: null characters are not allowed")
                stack.append((path, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
        elif isinstance(item, str) and "\x00" in item:
            raise RuleError(f"{where or 'value'}: null characters are not allowed")
    return value
