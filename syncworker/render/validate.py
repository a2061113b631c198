"""Check the whole bundle before any of it is applied.

The API server would refuse most of these too, but only object by object, halfway through
an apply; here every problem of every file is reported at once and nothing is applied.
Each message names the place (file and document) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from syncworker.kube import hooks, kinds, waves
from syncworker.kube.names import DNS_SUBDOMAIN, is_dns_label, is_dns_subdomain
from syncworker.render.base import Document, RenderOptions, field_path

# The sources stop reading at the same limits; checked again here for every file source.
from syncworker.sources.base import MAX_FILE_BYTES, MAX_TOTAL_BYTES, SourceFile
from syncworker.yamlload import type_name

MAX_OBJECTS = 5000
MAX_FILES = 2000
MAX_NAME_LENGTH = 253

DUPLICATE_HINT = (
    "(keep one: `recurse: false` reads only the directory's own files, `exclude` leaves paths out)"
)

_VERSION = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
_API_VERSION = re.compile(
    rf"v[0-9]+((alpha|beta)[0-9]+)?|(?P<group>{DNS_SUBDOMAIN.pattern})/{_VERSION}"
)
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
_BAD_NAME_CHARS = re.compile(r"[/%\s]")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def check_options(options: RenderOptions) -> list[str]:
    errors = []
    if not is_dns_label(options.service):
        errors.append(f"options.service: {options.service!r} is not a DNS-1123 label")
    if not options.commit or _BAD_NAME_CHARS.search(options.commit):
        errors.append(f"options.commit: {options.commit!r} is not a commit id")
    if options.namespace and not is_dns_label(options.namespace):
        errors.append(f"options.namespace: {options.namespace!r} is not a DNS-1123 label")
    if options.stateless:
        url = urlsplit(options.download_base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            errors.append(
                f"options.download_base_url: {options.download_base_url!r} is not an http(s) "
                "URL, which the stateless pattern needs"
            )
    return errors


def check_files(files: Sequence[SourceFile], errors: list[str]) -> list[SourceFile]:
    """The files small enough to parse; an error for each one that is not."""
    if len(files) > MAX_FILES:
        errors.append(f"{len(files)} files to render, more than the limit of {MAX_FILES}")
        return []
    total = sum(len(file.data) for file in files)
    if total > MAX_TOTAL_BYTES:
        errors.append(f"{total} bytes to render, more than the limit of {MAX_TOTAL_BYTES}")
        return []
    small = []
    for file in files:
        if len(file.data) > MAX_FILE_BYTES:
            errors.append(
                f"{file.path}: {len(file.data)} bytes, more than the limit of {MAX_FILE_BYTES}"
            )
        else:
            small.append(file)
    return small


def check_documents(documents: Sequence[Document], *, namespace: str, errors: list[str]) -> None:
    """Every object well formed, and no object defined twice once ``namespace`` is given
    to the namespaced objects without one."""
    if len(documents) > MAX_OBJECTS:
        errors.append(f"{len(documents)} objects, more than the limit of {MAX_OBJECTS}")
    scopes = kinds.crd_scopes(doc.obj for doc in documents)
    seen: dict[tuple[str, str, str, str], Document] = {}
    for doc in documents:
        problems = _check_object(doc.obj, scopes)
        errors.extend(f"{doc.place}: {problem}" for problem in problems)
        if problems:
            continue
        obj, meta = doc.obj, doc.obj["metadata"]
        own = meta.get("namespace") or ""
        if not own and kinds.is_namespaced(obj["apiVersion"], obj["kind"], scopes):
            own = namespace
        # A hook named by generateName is one object per prefix: two would be ambiguous.
        name = meta.get("name") or f"{meta['generateName']}*"
        key = (kinds.group_of(obj["apiVersion"]), obj["kind"], own, name)
        if key in seen:
            ref = f"{obj['kind']} {own}/{name}" if own else f"{obj['kind']} {name}"
            errors.append(f"{doc.place}: {ref}: also defined at {seen[key].place} {DUPLICATE_HINT}")
        else:
            seen[key] = doc


def _check_object(obj: Any, scopes: dict[tuple[str, str], str]) -> list[str]:
    if not isinstance(obj, dict):
        return [f"must be a mapping (a Kubernetes object), not {type_name(obj)}"]
    problems = []
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version is None:
        problems.append("apiVersion: required")
    elif not isinstance(api_version, str) or not _is_api_version(api_version):
        problems.append(
            f"apiVersion: {api_version!r} is not an API version "
            "(like v1, apps/v1 or example.com/v1alpha1)"
        )
    if kind is None:
        problems.append("kind: required")
    elif not isinstance(kind, str) or not _KIND.fullmatch(kind):
        problems.append(f"kind: {kind!r} is not a CamelCase kind (like ConfigMap)")
    problems.extend(_check_metadata(obj.get("metadata"), hook=hooks.is_hook(obj)))
    if problems:
        return problems
    for check in (waves.wave_of, hooks.phases_of, hooks.delete_policies_of):
        try:
            check(obj)
        except ValueError as exc:
            problems.append(str(exc))
    meta = obj["metadata"]
    if meta.get("namespace") and not kinds.is_namespaced(obj["apiVersion"], obj["kind"], scopes):
        problems.append(f"metadata.namespace: must not be set, {kind} is cluster-scoped")
    if kind == "Namespace" and not is_dns_label(meta.get("name") or ""):
        problems.append(f"metadata.name: {meta.get('name')!r} is not a DNS-1123 label")
    if kinds.is_crd(obj):
        problems.extend(_check_crd(obj))
    if (path := kinds.pod_spec_path(obj)) is not None:
        problems.extend(_check_pod_spec(obj, path))
    return problems


def _is_api_version(value: str) -> bool:
    match = _API_VERSION.fullmatch(value)
    return match is not None and len(match.group("group") or "") <= 253


def _check_metadata(meta: Any, *, hook: bool = False) -> list[str]:
    """``hook``: the object is a hook, created anew on each sync, so it may be named by
    ``generateName`` alone."""
    if meta is None:
        return ["metadata: required"]
    if not isinstance(meta, dict):
        return [f"metadata: must be a mapping, not {type_name(meta)}"]
    problems = []
    name = meta.get("name")
    prefix = meta.get("generateName")
    if (name is None or name == "") and prefix and hook:
        problems.extend(_check_generate_name(prefix))
    elif (name is None or name == "") and prefix:
        problems.append(
            f"metadata.generateName: {prefix!r} without metadata.name is a hook "
            "(an Argo CD or Helm hook Job, created anew on each sync), but the object has "
            f"no {hooks.ARGO_HOOK_ANNOTATION} annotation: give it a metadata.name, or "
            "annotate it as a hook"
        )
    elif name is None or name == "":
        problems.append("metadata.name: required")
    elif not isinstance(name, str):
        problems.append(f"metadata.name: must be a string, not {type_name(name)}")
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(f"metadata.name: longer than {MAX_NAME_LENGTH} characters")
    elif name in (".", "..") or _BAD_NAME_CHARS.search(name):
        problems.append(
            f"metadata.name: {name!r} is not a valid name (no '/', '%' or spaces, not . or ..)"
        )
    namespace = meta.get("namespace")
    if namespace not in (None, "") and not is_dns_label(namespace):
        problems.append(f"metadata.namespace: {namespace!r} is not a DNS-1123 label")
    problems.extend(_check_string_map(meta, "labels", is_label=True))
    problems.extend(_check_string_map(meta, "annotations", is_label=False))
    return problems


def _check_generate_name(prefix: Any) -> list[str]:
    if not isinstance(prefix, str):
        return [f"metadata.generateName: must be a string, not {type_name(prefix)}"]
    # The server appends 5 characters and needs a valid name: keep room for them.
    if len(prefix) > MAX_NAME_LENGTH - 5 or _BAD_NAME_CHARS.search(prefix):
        return [
            f"metadata.generateName: {prefix!r} is not a valid name prefix "
            f"(no '/', '%' or spaces, at most {MAX_NAME_LENGTH - 5} characters)"
        ]
    return []


def _check_string_map(meta: dict[str, Any], field: str, *, is_label: bool) -> list[str]:
    values = meta.get(field)
    if values is None:
        return []
    if not isinstance(values, dict):
        return [f"metadata.{field}: must be a mapping of strings, not {type_name(values)}"]
    problems = []
    for key, value in values.items():
        at = field_path(["metadata", field, key])
        if not _is_qualified_name(key):
            problems.append(f"{at}: not a valid key (an optional DNS prefix and '/', then a name)")
        if not isinstance(value, str):
            problems.append(f"{at}: must be a string, not {type_name(value)}")
        elif is_label and value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
            problems.append(
                f"{at}: {value!r} is not a label value "
                "(at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric)"
            )
    return problems


def _is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and _LABEL_NAME.fullmatch(name) is not None


def _check_crd(obj: dict[str, Any]) -> list[str]:
    # Rendering relies on these to know where the CRD's own objects live.
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [f"spec: must be a mapping, not {type_name(spec)}"]
    problems = []
    if not isinstance(spec.get("group"), str):
        problems.append("spec.group: required")
    names = spec.get("names")
    if not isinstance(names, dict) or not isinstance(names.get("kind"), str):
        problems.append("spec.names.kind: required")
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append("spec.scope: must be Namespaced or Cluster")
    return problems


def _check_pod_spec(obj: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    # Mutation adds to these lists, so their shape is checked even for fields the rest of
    # rendering never reads.
    value: Any = obj
    for depth, key in enumerate(path):
        value = value.get(key)
        if not isinstance(value, dict):
            return [f"{field_path(path[: depth + 1])}: must be a mapping, not {type_name(value)}"]
    problems = []
    containers = value.get("containers")
    if containers is None or containers == []:
        problems.append(f"{field_path([*path, 'containers'])}: must be a non-empty list")
    for field in ("containers", "initContainers", "volumes"):
        problems.extend(_check_named_list(value, path, field, "name"))
    for field in ("containers", "initContainers"):
        items = value.get(field)
        for index, container in enumerate(items if isinstance(items, list) else []):
            if isinstance(container, dict):
                here: list[str | int] = [*path, field, index]
                problems.extend(_check_named_list(container, here, "env", "name"))
                problems.extend(_check_named_list(container, here, "volumeMounts", "mountPath"))
    return problems


def _check_named_list(
    parent: dict[str, Any], parent_at: Sequence[str | int], field: str, key: str
) -> list[str]:
    """``parent[field]``, when set, is a list of mappings that each have ``key``."""
    items = parent.get(field)
    at = [*parent_at, field]
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"{field_path(at)}: must be a list, not {type_name(items)}"]
    problems = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{field_path([*at, index])}: must be a mapping, not {type_name(item)}")
        elif not isinstance(item.get(key), str) or not item[key]:
            problems.append(f"{field_path([*at, index, key])}: required")
    return problems
