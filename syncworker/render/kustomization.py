"""Walk a kustomization graph inside one repository, before kustomize runs.

kustomize's default load restrictor keeps every file a kustomization loads inside its own
root (the directory of the kustomization file), while ``resources``, ``bases`` and
``components`` may name other directories, each a new root. So the roots to read are the
closure of those directory entries, and the walk reads each with ``read_dir``. On the way
it refuses what we never run, naming the kustomization file and the entry: remote bases
and URLs (kustomize would fetch them), paths that leave the repository, Helm charts,
exec/KRM plugins, and directory entries that do not exist or hold no kustomization.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from syncworker.render.base import RenderError
from syncworker.sources.base import (
    SourceError,
    SourceFile,
    SourceNotFound,
    UnsafePathError,
    normalize_dir,
)
from syncworker.yamlload import ManifestLoader, type_name

ReadDir = Callable[[str], list[SourceFile]]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Bounds on what one build may pull in (a base at the repository root reads all of it).
MAX_ROOTS = 200
MAX_BUILD_FILES = 20000
MAX_BUILD_BYTES = 64 * 1024 * 1024

_DIR_FIELDS = ("resources", "bases", "components")
_HELM_FIELDS = ("helmCharts", "helmGlobals", "helmChartInflationGenerator")
_PLUGIN_FIELDS = ("generators", "transformers", "validators")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:[0-9]+)?$")
_FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")


def kustomization_file(files: dict[str, bytes], directory: str) -> str | None:
    """The kustomization file of ``directory`` among ``files`` (repository paths)."""
    found = [p for p in (_join(directory, n) for n in KUSTOMIZATION_FILES) if p in files]
    if len(found) > 1:
        raise RenderError([f"{directory or '.'}: more than one kustomization file: {found}"])
    return found[0] if found else None


@dataclass
class RepoView:
    """The files of the repository directories read so far, each read once."""

    read_dir: ReadDir
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)

    def add(self, directory: str, files: list[SourceFile]) -> None:
        self.dirs.append(directory)
        for file in files:
            if not _is_inside(normalize_dir(file.path), directory):
                raise UnsafePathError(f"{file.path}: outside the directory read, {directory!r}")
            self.files[file.path] = file.data
        if len(self.files) > MAX_BUILD_FILES:
            raise RenderError([f"the build reads more than {MAX_BUILD_FILES} files"])
        if sum(len(data) for data in self.files.values()) > MAX_BUILD_BYTES:
            raise RenderError([f"the build reads more than {MAX_BUILD_BYTES} bytes"])

    def covers(self, path: str) -> bool:
        return any(_is_within(path, d) for d in self.dirs)

    def has_dir(self, path: str) -> bool:
        prefix = f"{path}/" if path else ""
        return any(p.startswith(prefix) for p in self.files)

    def ensure_dir(self, path: str, why: str) -> bool:
        """Read ``path`` unless a directory read already holds it; False when it is no
        directory of the repository at this commit."""
        if not self.covers(path):
            try:
                self.add(path, self.read_dir(path))
            except SourceNotFound:
                return False
            except SourceError as exc:
                raise type(exc)(
                    f"{why}: {exc}", transient=exc.transient, retry_after=exc.retry_after
                ) from exc
        return self.has_dir(path)

    def paths_read(self) -> list[str]:
        """The directories read, without those inside another one read."""
        return sorted(d for d in set(self.dirs) if not any(_is_inside(d, o) for o in self.dirs))


@dataclass(frozen=True)
class Graph:
    """The kustomization files of one build, starting with its own."""

    kustomizations: tuple[str, ...]
    secret_values: tuple[str, ...]


def walk(start: str, view: RepoView) -> Graph:
    """Read every root the build of directory ``start`` needs into ``view``. Raises
    RenderError listing every refused entry of every kustomization reached."""
    errors: list[str] = []
    if not view.ensure_dir(start, start or "."):
        raise RenderError([f"{start or '.'}: not a directory at this commit"])
    first = kustomization_file(view.files, start)
    if first is None:
        names = ", ".join(KUSTOMIZATION_FILES)
        raise RenderError([f"{start or '.'}: no kustomization file ({names})"])
    pending, seen, secrets = [first], [first], []
    while pending:
        kfile = pending.pop(0)
        data = _load(kfile, view.files[kfile], errors)
        if data is None:
            continue
        root = posixpath.dirname(kfile)
        for where, entry in _directory_entries(kfile, data, errors):
            target = _local_path(kfile, where, entry, root, errors)
            if target is None or target in view.files:
                continue  # refused, or a file of this root (kustomize checks the rest)
            if not view.ensure_dir(target, f"{kfile}: {where}"):
                errors.append(f"{kfile}: {where}: {entry!r}: {_missing(entry, root)}")
                continue
            try:
                child = kustomization_file(view.files, target)
            except RenderError as exc:
                errors.extend(f"{kfile}: {where}: {e}" for e in exc.errors)
                continue
            if child is None:
                errors.append(f"{kfile}: {where}: {entry!r}: {target} holds no kustomization file")
            elif child not in seen:
                if len(seen) >= MAX_ROOTS:
                    raise RenderError([f"{kfile}: more than {MAX_ROOTS} kustomizations"])
                seen.append(child)
                pending.append(child)
        for where, entry in _file_entries(data):
            _local_path(kfile, where, entry, root, errors)
        _check_plugins(kfile, data, view.files, errors)
        secrets.extend(_secret_values(root, data, view.files))
    if errors:
        raise RenderError(errors)
    return Graph(tuple(seen), tuple(sorted(set(secrets), key=len, reverse=True)))


def _load(kfile: str, data: bytes, errors: list[str]) -> dict[str, Any] | None:
    try:
        loaded = yaml.load(data, Loader=ManifestLoader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        errors.append(f"{kfile}: {where}invalid YAML: {exc.problem or exc.context}")
        return None
    except yaml.YAMLError as exc:
        errors.append(f"{kfile}: invalid YAML: {str(exc).splitlines()[0]}")
        return None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        errors.append(f"{kfile}: must be a mapping (a kustomization), not {type_name(loaded)}")
        return None
    for key in _HELM_FIELDS:
        if key in loaded:
            errors.append(
                f"{kfile}: {key}: Helm charts are not rendered (commit the output of "
                "`helm template` instead)"
            )
    return loaded


def _directory_entries(
    kfile: str, data: dict[str, Any], errors: list[str]
) -> Iterator[tuple[str, str]]:
    for key in _DIR_FIELDS:
        for index, entry in enumerate(_list(data.get(key))):
            if isinstance(entry, str):
                yield f"{key}[{index}]", entry
            else:
                errors.append(f"{kfile}: {key}[{index}]: must be a path, not {type_name(entry)}")


def _file_entries(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every file path a kustomization names besides its resources, where it says so.
    kustomize loads ``http(s)://`` paths over the network, so all of them are checked."""
    for key in ("crds", "configurations"):
        for index, entry in enumerate(_list(data.get(key))):
            if isinstance(entry, str):
                yield f"{key}[{index}]", entry
    for index, entry in enumerate(_list(data.get("patchesStrategicMerge"))):
        # Entries may be inline patches, which are YAML documents, not paths.
        if isinstance(entry, str) and "\n" not in entry and not entry.lstrip().startswith("{"):
            yield f"patchesStrategicMerge[{index}]", entry
    for key in ("patches", "patchesJson6902", "replacements"):
        for index, entry in enumerate(_list(data.get(key))):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield f"{key}[{index}].path", entry["path"]
    openapi = data.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield "openapi.path", openapi["path"]
    for key in ("configMapGenerator", "secretGenerator"):
        for index, generator in enumerate(_list(data.get(key))):
            if isinstance(generator, dict):
                for where, path in _generator_files(generator):
                    yield f"{key}[{index}].{where}", path


def _generator_files(generator: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for index, entry in enumerate(_list(generator.get("files"))):
        if isinstance(entry, str):
            yield f"files[{index}]", entry.partition("=")[2] or entry
    for index, entry in enumerate(_list(generator.get("envs"))):
        if isinstance(entry, str):
            yield f"envs[{index}]", entry
    if isinstance(generator.get("env"), str):
        yield "env", generator["env"]


def _local_path(kfile: str, where: str, entry: str, root: str, errors: list[str]) -> str | None:
    """The repository path ``entry`` names, or None after recording why it is refused."""
    problem = _remote(entry)
    if problem:
        errors.append(f"{kfile}: {where}: {entry!r}: {problem}")
        return None
    if entry.startswith("/") or "\\" in entry:
        errors.append(f"{kfile}: {where}: {entry!r}: absolute paths are not allowed")
        return None
    target = posixpath.normpath(posixpath.join(root, entry))
    if target == ".." or target.startswith("../"):
        errors.append(f"{kfile}: {where}: {entry!r} leaves the repository")
        return None
    return "" if target == "." else target


def _remote(entry: str) -> str:
    if _SCHEME.match(entry) or entry.startswith("git@") or "//" in entry or "?" in entry:
        return "remote bases and URLs are not allowed (only paths inside this repository)"
    return ""


def _missing(entry: str, root: str) -> str:
    # kustomize reads ``github.com/org/repo/path`` as a remote base when no such local
    # directory exists; say so rather than "not found".
    if _HOST.match(entry.split("/", 1)[0]) and "/" in entry:
        return "a remote base (host/path): only paths inside this repository are allowed"
    return f"neither a directory of the repository at this commit nor a file under {root or '.'}"


def _check_plugins(
    kfile: str, data: dict[str, Any], files: dict[str, bytes], errors: list[str]
) -> None:
    """Built-in transformer configs (``apiVersion: builtin``) are kustomize's own code and
    allowed; anything else in these fields is an exec or KRM function plugin."""
    root = posixpath.dirname(kfile)
    for key in _PLUGIN_FIELDS:
        for index, entry in enumerate(_list(data.get(key))):
            where = f"{kfile}: {key}[{index}]"
            if not isinstance(entry, str):
                errors.append(f"{where}: must be a path or inline YAML, not {type_name(entry)}")
                continue
            if "\n" in entry:
                text = entry.encode()
            else:
                path = _local_path(kfile, f"{key}[{index}]", entry, root, errors)
                if path is None:
                    continue
                if path not in files:
                    errors.append(
                        f"{where}: {entry!r}: only files of built-in plugin configs are allowed"
                    )
                    continue
                text = files[path]
            if not _all_builtin(text):
                errors.append(
                    f"{where}: {entry if chr(10) not in entry else '(inline)'}: exec and KRM "
                    "function plugins are not run (only apiVersion: builtin configs)"
                )


def _all_builtin(text: bytes) -> bool:
    try:
        docs = [d for d in yaml.load_all(text, Loader=ManifestLoader) if d is not None]
    except yaml.YAMLError:
        return False
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("apiVersion") != "builtin":
            return False
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        if any(name in annotations for name in _FUNCTION_ANNOTATIONS):
            return False
    return bool(docs)


def _secret_values(root: str, data: dict[str, Any], files: dict[str, bytes]) -> list[str]:
    """What a secretGenerator puts in a Secret: kustomize's error text may quote it."""
    values = []
    for generator in _list(data.get("secretGenerator")):
        if not isinstance(generator, dict):
            continue
        for literal in _list(generator.get("literals")):
            if isinstance(literal, str):
                values.append(literal.partition("=")[2])
        for _, path in _generator_files(generator):
            text = files.get(posixpath.normpath(posixpath.join(root, path)), b"")
            content = text.decode("utf-8", "replace")
            values.append(content.strip())
            values.extend(line.partition("=")[2].strip() for line in content.splitlines())
    # Short values would blank out ordinary words of the message.
    return [value for value in values if len(value) >= 4]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _is_within(path: str, directory: str) -> bool:
    return directory == "" or path == directory or path.startswith(f"{directory}/")


def _is_inside(path: str, directory: str) -> bool:
    return path != directory and _is_within(path, directory)
