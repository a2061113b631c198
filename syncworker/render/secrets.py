"""Hide Secret values wherever a rendered bundle is shown (API, admin, diffs).

The stored bundle keeps the values (it is what gets applied, and re-applied on a
rollback); every view of it goes through ``mask_secrets`` or ``mask_bundle_yaml``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import yaml

from syncworker.render.bundle import dump_yaml
from syncworker.yamlload import ManifestLoader

MASK = "(hidden)"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def mask_secrets(objects: Iterable[Any]) -> list[Any]:
    """Copies of ``objects`` with every value of a Secret's ``data`` and ``stringData``
    (and a last-applied annotation, which repeats them) replaced by ``MASK``; the keys
    stay, so people still see what a Secret holds."""
    return [_masked(obj) if _is_secret(obj) else obj for obj in objects]


def mask_bundle_yaml(text: str) -> str:
    """``text`` (multi-document YAML, as a bundle is stored) with its Secrets masked."""
    documents = [d for d in yaml.load_all(text, Loader=ManifestLoader) if d is not None]
    return dump_yaml(mask_secrets(documents))


def _is_secret(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("apiVersion") == "v1" and obj.get("kind") == "Secret"


def _masked(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        values = obj.get(field)
        if isinstance(values, dict):
            obj[field] = dict.fromkeys(values, MASK)
        elif values is not None:
            obj[field] = MASK
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and _LAST_APPLIED in annotations:
        annotations[_LAST_APPLIED] = MASK
    return obj
