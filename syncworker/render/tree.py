"""Choose the files of a plain service directory.

Every file under the service directory, less hidden ones, less subdirectories when
``recurse`` is off, less what ``.gitopsignore`` (at the repository root or in the service
directory, gitignore syntax) and the service's ``exclude`` patterns leave out, and, when
``include`` is given, only what it names. Patterns follow gitignore rules through
``pathspec``. Among the chosen files, a subdirectory holding a kustomization is one
kustomize unit (Flux's rule): it is built, and its files are not read as plain manifests.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pathspec

from syncworker.render.base import RenderError, ServiceOptions
from syncworker.render.kustomization import KUSTOMIZATION_FILES
from syncworker.sources.base import SourceFile, UnsafePathError, normalize_dir

IGNORE_FILE = ".gitopsignore"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
CHART_FILE = "Chart.yaml"


@dataclass(frozen=True)
class Selection:
    """The plain manifest files (sorted by path) and the kustomize units (repository
    directories, sorted) of one service directory."""

    manifests: tuple[SourceFile, ...]
    kustomize_dirs: tuple[str, ...]


def select(
    files: Sequence[SourceFile],
    base_dir: str,
    options: ServiceOptions,
    *,
    root_ignore: bytes | None = None,
) -> Selection:
    """Raises UnsafePathError for a file outside ``base_dir``, RenderError for a bad
    pattern or a Helm chart among the chosen files."""
    base = normalize_dir(base_dir)
    prefix = f"{base}/" if base else ""
    relative = {}
    for file in files:
        path = normalize_dir(file.path)
        if not path.startswith(prefix) or path == base:
            raise UnsafePathError(f"{file.path}: outside the service directory {base!r}")
        relative[path[len(prefix) :]] = SourceFile(path, file.data)
    own_ignore = relative.get(IGNORE_FILE)
    rules = _Rules(
        options,
        root_ignore=root_ignore if base else None,
        own_ignore=own_ignore.data if own_ignore is not None else None,
        own_ignore_path=f"{prefix}{IGNORE_FILE}",
    )
    chosen = sorted(rel for rel in relative if rules.chooses(rel, f"{prefix}{rel}"))
    units = _topmost(posixpath.dirname(rel) for rel in chosen if _is_kustomization(rel))
    # A chart inside a kustomize unit is kustomize's business (it refuses helmCharts).
    charts = [
        f"{prefix}{rel}"
        for rel in chosen
        if posixpath.basename(rel) == CHART_FILE and not any(_within(rel, u) for u in units)
    ]
    if charts:
        raise RenderError(
            [
                f"{chart}: a Helm chart; Helm charts are not rendered (commit the output of "
                "`helm template`, or leave the chart out with `exclude`)"
                for chart in charts
            ]
        )
    manifests = [
        relative[rel]
        for rel in chosen
        if rel.endswith(MANIFEST_SUFFIXES) and not any(_within(rel, unit) for unit in units)
    ]
    return Selection(tuple(manifests), tuple(f"{prefix}{unit}" for unit in units))


def check_patterns(where: str, patterns: Iterable[str]) -> list[str]:
    """Errors for patterns that are no use as ``include``/``exclude``, each naming
    ``where[index]``."""
    errors = []
    for index, pattern in enumerate(patterns):
        problem = pattern_problem(pattern)
        if problem:
            errors.append(f"{where}[{index}]: {pattern!r} is {problem}")
    return errors


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` is no use as an ``include``/``exclude`` entry ("" when it is
    fine): gitignore syntax cannot read it, or it is blank or a comment there and so
    would match nothing without a word."""
    if not pattern.strip():
        return "empty (a blank line matches nothing)"
    if pattern.startswith("#"):
        return "a comment in gitignore syntax, which matches nothing (write \\# for a '#')"
    try:
        pathspec.GitIgnoreSpec.from_lines([pattern])
    except (ValueError, TypeError) as exc:
        return f"not a gitignore-style pattern ({exc})"
    return ""


class _Rules:
    def __init__(
        self,
        options: ServiceOptions,
        *,
        root_ignore: bytes | None,
        own_ignore: bytes | None,
        own_ignore_path: str,
    ) -> None:
        errors = check_patterns("include", options.include)
        errors += check_patterns("exclude", options.exclude)
        if errors:
            raise RenderError(errors)
        self.recurse = options.recurse
        self.include = pathspec.GitIgnoreSpec.from_lines(options.include)
        self.exclude = pathspec.GitIgnoreSpec.from_lines(options.exclude)
        self.root_ignore = _ignore_spec(IGNORE_FILE, root_ignore)
        self.own_ignore = _ignore_spec(own_ignore_path, own_ignore)
        self.has_include = bool(options.include)

    def chooses(self, rel: str, path: str) -> bool:
        if any(part.startswith(".") for part in rel.split("/")):
            return False  # hidden files and folders (.github/workflows/*.yml) are not ours
        if not self.recurse and "/" in rel:
            return False
        if self.root_ignore is not None and self.root_ignore.match_file(path):
            return False
        if self.own_ignore is not None and self.own_ignore.match_file(rel):
            return False
        if self.has_include and not self.include.match_file(rel):
            return False
        return not self.exclude.match_file(rel)


def _ignore_spec(path: str, data: bytes | None) -> pathspec.GitIgnoreSpec | None:
    if data is None:
        return None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RenderError([f"{path}: not UTF-8 text"]) from None
    errors = []
    for number, line in enumerate(lines, start=1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (ValueError, TypeError) as exc:
            errors.append(f"{path}: line {number}: {line!r} is not a gitignore pattern ({exc})")
    if errors:
        raise RenderError(errors)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _is_kustomization(rel: str) -> bool:
    directory, name = posixpath.split(rel)
    return bool(directory) and name in KUSTOMIZATION_FILES


def _topmost(directories: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for directory in sorted(set(directories)):
        if not any(_within(directory, other) for other in kept):
            kept.append(directory)
    return kept


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(f"{directory}/")
