"""Read the files of a service directory into documents.

``.yaml``/``.yml`` files hold Kubernetes objects (several documents each, ``v1 List``
expanded); a YAML document with neither ``apiVersion`` nor ``kind`` is no Kubernetes
object (an application's own configuration, CI files, Helm values) and is skipped with a
warning. A ``.json`` file holding an object (``apiVersion`` and ``kind``) or a ``List`` is
a manifest; every other ``.json`` file is the service's configuration, and together they
become one ConfigMap, ``<service>-config``. Other files are ignored. Problems are
appended to ``errors`` so that one render reports all of them.

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
from syncworker.sources.base import SourceFile
from syncworker.yamlload import ManifestLoader, type_name

YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIX = ".json"
CONFIG_PLACE = "(generated from the .json files)"
NOT_AN_OBJECT = "skipped: no apiVersion and no kind, so not a Kubernetes object"
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


def parse_files(
    files: Sequence[SourceFile],
    *,
    base_dir: str,
    service: str,
    errors: list[str],
    warnings: list[str],
) -> list[Document]:
    """The documents of the YAML and JSON manifests, then the configuration ConfigMap if
    any. Documents that are no Kubernetes object are skipped with a warning."""
    documents: list[Document] = []
    config_files = []
    for file in files:
        if file.path.endswith(YAML_SUFFIXES):
            documents.extend(parse_yaml(file, errors, warnings))
        elif file.path.endswith(JSON_SUFFIX):
            manifest = parse_json_manifest(file, errors)
            if manifest is None:
                config_files.append(file)
            else:
                documents.extend(manifest)
    config = config_map(config_files, base_dir=base_dir, service=service, errors=errors)
    if config is not None:
        documents.append(config)
    return documents


def parse_yaml(
    file: SourceFile, errors: list[str], warnings: list[str] | None = None
) -> list[Document]:
    """The documents of one YAML file. With ``warnings`` given, documents that are no
    Kubernetes object are skipped and named there; without, they are kept (and fail
    validation)."""
    documents: list[Document] = []
    copier = _PlainCopier(errors)
    try:
        # Bytes, not text: libyaml detects the encoding (UTF-8, or UTF-16 with a BOM).
        for index, loaded in enumerate(yaml.load_all(file.data, Loader=Loader), start=1):
            if loaded is None:
                continue
            place = f"{file.path}: document {index}"
            if warnings is not None and not looks_like_object(loaded):
                warnings.append(f"{place}: {NOT_AN_OBJECT}")
                continue
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


def looks_like_object(value: Any) -> bool:
    """A document meant as a Kubernetes object: one with apiVersion or kind (one without
    the other is a broken object, not something else)."""
    return isinstance(value, dict) and ("apiVersion" in value or "kind" in value)


def parse_json_manifest(file: SourceFile, errors: list[str]) -> list[Document] | None:
    """The documents of a ``.json`` file holding an object or a List, or None when it is
    configuration (or invalid JSON, which ``config_map`` reports)."""
    try:
        text = file.data.decode("utf-8")
        loaded = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not (isinstance(loaded, dict) and "apiVersion" in loaded and "kind" in loaded):
        return None
    try:
        json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        errors.append(f"{file.path}: invalid JSON: duplicate key {exc.args[0]!r}")
        return []
    place = f"{file.path}: document 1"
    obj = _PlainCopier(errors).copy(loaded, place)
    return [] if obj is _INVALID else _expand_list(Document(place, obj), errors)


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # As for YAML: the API server would refuse the object, a silent last-wins hides a bug.
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _DuplicateKey(key)
        mapping[key] = value
    return mapping


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
