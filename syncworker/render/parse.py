"""Read the files of a service directory into documents.

``.yaml``/``.yml`` files hold Kubernetes objects (several documents each, ``v1 List``
expanded); ``.json`` files are the service's configuration and become one ConfigMap,
``<service>-config``. Other files are ignored. Problems are appended to ``errors`` so
that one render reports all of them.

Values are read the way Kubernetes reads them: timestamps stay strings, duplicate keys
are an error, and only JSON types (mapping, list, string, number, boolean, null) are
accepted, since that is all an object can hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import yaml

from syncworker.render.base import Document, field_path
from syncworker.sources.base import SourceFile, UnsafePathError, normalize_dir
from syncworker.yamlload import ManifestLoader, type_name

YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIX = ".json"
CONFIG_PLACE = "(generated from the .json files)"
MAX_CONFIGMAP_BYTES = 1024 * 1024  # what the API server stores in one object
# Nesting deeper than any real manifest; keeps the copy and the dumper off Python's
# recursion limit.
MAX_DEPTH = 100
# A file may not expand (through YAML aliases) to more values than a file of the
# maximum size could spell out by hand.
MAX_VALUES_PER_FILE = 1024 * 1024

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# PyYAML's C loader, reading values the way Kubernetes does (see syncworker.yamlload).
Loader = ManifestLoader


def select_files(files: Sequence[SourceFile], base_dir: str) -> list[SourceFile]:
    """The files to render, sorted by path: YAML and JSON files under ``base_dir``.
    Raises UnsafePathError for a path outside it."""
    base = normalize_dir(base_dir)
    prefix = f"{base}/" if base else ""
    selected = []
    for file in files:
        path = normalize_dir(file.path)
        if not path.startswith(prefix) or path == base:
            raise UnsafePathError(f"{file.path}: outside the service directory {base!r}")
        hidden = any(part.startswith(".") for part in path[len(prefix) :].split("/"))
        # Hidden files and folders (.github/workflows/*.yml) hold no manifests of ours.
        if path.endswith((*YAML_SUFFIXES, JSON_SUFFIX)) and not hidden:
            selected.append(SourceFile(path, file.data))
    return sorted(selected, key=lambda file: file.path)


def parse_files(
    files: Sequence[SourceFile], *, base_dir: str, service: str, errors: list[str]
) -> list[Document]:
    """The documents of the YAML files, then the configuration ConfigMap if any."""
    documents: list[Document] = []
    for file in files:
        if file.path.endswith(YAML_SUFFIXES):
            documents.extend(parse_yaml(file, errors))
    config = config_map(
        [file for file in files if file.path.endswith(JSON_SUFFIX)],
        base_dir=base_dir,
        service=service,
        errors=errors,
    )
    if config is not None:
        documents.append(config)
    return documents


def parse_yaml(file: SourceFile, errors: list[str]) -> list[Document]:
    documents: list[Document] = []
    copier = _PlainCopier(errors)
    try:
        # Bytes, not text: libyaml detects the encoding (UTF-8, or UTF-16 with a BOM).
        for index, loaded in enumerate(yaml.load_all(file.data, Loader=Loader), start=1):
            if loaded is None:
                continue
            place = f"{file.path}: document {index}"
            obj = copier.copy(loaded, place)
            if obj is not _INVALID:
                documents.extend(_expand_list(Document(place, obj), errors))
    except yaml.MarkedYAMLError as exc:
        errors.append(_yaml_error(file.path, exc))
    except yaml.reader.ReaderError as exc:  # not text: an encoding or control character
        reason = str(exc).splitlines()[0]
        errors.append(f"{file.path}: byte {exc.position}: invalid YAML: {reason}")
    except yaml.YAMLError as exc:
        errors.append(f"{file.path}: invalid YAML: {str(exc).splitlines()[0]}")
    return documents


def _expand_list(doc: Document, errors: list[str]) -> list[Document]:
    obj = doc.obj
    if not (isinstance(obj, dict) and obj.get("apiVersion") == "v1" and obj.get("kind") == "List"):
        return [doc]
    items = obj.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        errors.append(f"{doc.place}: items: must be a list, not {type_name(items)}")
        return []
    return [Document(f"{doc.place}: items[{i}]", item) for i, item in enumerate(items)]


def _yaml_error(path: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = exc.problem or exc.context or "invalid YAML"
    return f"{path}: {where}invalid YAML: {problem}"


def config_map(
    files: Sequence[SourceFile], *, base_dir: str, service: str, errors: list[str]
) -> Document | None:
    """The ConfigMap ``<service>-config`` holding every JSON file, keyed by its path
    relative to ``base_dir`` with ``/`` as ``_``; None when there are no JSON files."""
    if not files:
        return None
    prefix = f"{base_dir}/" if base_dir else ""
    data: dict[str, str] = {}
    owners: dict[str, str] = {}
    for file in files:
        key = file.path.removeprefix(prefix).replace("/", "_")
        if len(key) > 253 or not _CONFIG_KEY.fullmatch(key):
            errors.append(
                f"{file.path}: {key!r} is not a valid ConfigMap key "
                "(letters, digits, '-', '_' and '.', at most 253)"
            )
            continue
        if key in owners:
            errors.append(f"{file.path}: ConfigMap key {key!r} is already used by {owners[key]}")
            continue
        text = _json_text(file, errors)
        if text is not None:
            data[key] = text
            owners[key] = file.path
    size = sum(len(key) + len(value.encode()) for key, value in data.items())
    if size > MAX_CONFIGMAP_BYTES:
        errors.append(
            f"{CONFIG_PLACE}: the .json files hold {size} bytes, more than a ConfigMap can "
            f"({MAX_CONFIGMAP_BYTES})"
        )
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{service}-config"},
        "data": dict(sorted(data.items())),
    }
    return Document(CONFIG_PLACE, obj)


def _json_text(file: SourceFile, errors: list[str]) -> str | None:
    try:
        text = file.data.decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError:
        errors.append(f"{file.path}: invalid JSON: not UTF-8 text")
        return None
    except json.JSONDecodeError as exc:
        errors.append(
            f"{file.path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        )
        return None
    except RecursionError:
        errors.append(f"{file.path}: invalid JSON: nested too deeply")
        return None
    return text


_INVALID = object()


class _Unsupported(Exception):
    pass


class _PlainCopier:
    """Copies loaded YAML into fresh JSON-typed values.

    The copy shares nothing, so YAML anchors cannot make one object's mutation leak into
    another, and the value budget stops an alias "billion laughs" before it expands.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.budget = MAX_VALUES_PER_FILE
        self.trail: list[str | int] = []

    def copy(self, value: Any, place: str) -> Any:
        self.trail = []
        try:
            return self._copy(value)
        except _Unsupported as exc:
            where = f"{field_path(self.trail)}: " if self.trail else ""
            self.errors.append(f"{place}: {where}{exc}")
            return _INVALID

    def _copy(self, value: Any) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _Unsupported(f"expands to more than {MAX_VALUES_PER_FILE} values per file")
        if len(self.trail) > MAX_DEPTH:
            raise _Unsupported(f"nested more than {MAX_DEPTH} levels deep")
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        if isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                self.trail.append(index)
                items.append(self._copy(item))
                self.trail.pop()
            return items
        if isinstance(value, dict):
            mapping = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _Unsupported(f"key {key!r} must be a string (quote it)")
                self.trail.append(key)
                mapping[key] = self._copy(item)
                self.trail.pop()
            return mapping
        raise _Unsupported(f"{type_name(value)} values are not supported")
