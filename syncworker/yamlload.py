"""The YAML loaders every reader of YAML here uses: PyYAML's safe C loader, stricter.

``StrictLoader`` refuses duplicate keys (PyYAML silently keeps the last one; kubectl
refuses them, and a dropped second ``env:`` or ``github_configs`` entry is a bug nobody
finds). ``ManifestLoader`` also reads scalars the way Kubernetes does: ``2024-01-01``
stays a string (JSON has no dates) and a bare ``=`` is a string, not an error.
"""

from __future__ import annotations

import datetime
from collections.abc import Hashable
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml: same results, only slower
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

SafeBase = _SafeLoader


class StrictLoader(_SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # Merge keys (<<) may legitimately be overridden, so only own scalars count.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ManifestLoader(StrictLoader):
    pass


_DROPPED_RESOLVERS = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_RESOLVERS]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def type_name(value: object) -> str:
    """How messages name the type of a value read from YAML or JSON."""
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
