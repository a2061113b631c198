"""Secret values, masked wherever a bundle is shown (the API, the admin, a diff).

A Secret's ``data`` and ``stringData`` come from Git and are applied as they are, so the
stored bundle keeps them (a rollback re-applies it); what people see has every value
replaced by ``MASK``, the same marker whatever the value, so not even its length shows.
``syncworker.render.secrets`` offers the same under the render floor's names.
Keys stay visible: which keys a Secret has is configuration, not a secret.
"""

from __future__ import annotations

from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MASK = "(hidden)"
SECRET_FIELDS = ("data", "stringData")
# kubectl's client-side apply copies the whole object, values included, into this one.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
UNREADABLE = "# not shown: this bundle could not be read to mask its Secret values\n"


def is_secret(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("kind") == "Secret"


def _holds_secrets(obj: Any) -> bool:
    if is_secret(obj):
        return True
    items = obj.get("items") if isinstance(obj, dict) else None
    return isinstance(items, list) and any(_holds_secrets(item) for item in items)


def mask_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with its Secret values masked (the items of a ``List`` too);
    any other object is returned as it is."""
    if not is_secret(obj):
        items = obj.get("items")
        if isinstance(items, list) and _holds_secrets(obj):
            return {**obj, "items": [mask_secret(i) if isinstance(i, dict) else i for i in items]}
        return obj
    masked = dict(obj)
    for field in SECRET_FIELDS:
        values = obj.get(field)
        if isinstance(values, dict):
            masked[field] = dict.fromkeys(values, MASK)
        elif values is not None:
            masked[field] = MASK
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and isinstance(annotations, dict) and LAST_APPLIED in annotations:
        masked["metadata"] = {**meta, "annotations": {**annotations, LAST_APPLIED: MASK}}
    return masked


def mask_secret_values(bundle_yaml: str) -> str:
    """The bundle with every Secret value masked. Other documents keep their exact text;
    a document holding a Secret is written out again, masked. A bundle that cannot be
    read is not shown at all rather than shown unmasked."""
    try:
        nodes = list(yaml.compose_all(bundle_yaml, Loader=_Loader))
        objects = list(yaml.load_all(bundle_yaml, Loader=_Loader))
    except yaml.YAMLError:
        return UNREADABLE
    parts: list[str] = []
    shown = 0
    for node, obj in zip(nodes, objects, strict=True):
        if node is None or not _holds_secrets(obj):
            continue
        start, end = node.start_mark.index, node.end_mark.index
        text = yaml.safe_dump(
            mask_secret(obj), sort_keys=False, default_flow_style=False, allow_unicode=True
        )
        if not bundle_yaml[start:end].endswith("\n"):
            text = text.rstrip("\n")
        parts += [bundle_yaml[shown:start], text]
        shown = end
    parts.append(bundle_yaml[shown:])
    return "".join(parts)
