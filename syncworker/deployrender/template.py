"""The files of ``manifests/`` filled in, and the stable YAML they are printed as.

A manifest is plain Kubernetes YAML (read with the strict safe loader of
``syncworker.yamlload``) plus four small devices, so that the shapes stay in YAML and only
the values are computed in Python:

- ``${name}`` as a whole value becomes the value given, of any type. None removes the
  key or list item that holds it.
- ``${name}`` inside a longer string becomes the value's text.
- ``!if:name NODE`` is NODE when the value ``name`` is true, else absent, like None
  above (a whole document too: ``--- !if:name``); ``!unless:name`` the other way round.
- A list that ``${name}`` or ``!if:``/``!unless:`` puts in a list item is spliced in.
- ``!labels COMPONENT [APP]`` is our label set, ``!selector COMPONENT [APP]`` the part
  of it that selectors match.

YAML anchors and aliases stay aliases in the output (PyYAML writes them as ``&id001``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from syncworker.yamlload import StrictLoader

Obj = dict[str, Any]

PART_OF = "simple-gitops"
APP_NAME = "simple-gitops"
# Not our MANAGED_BY_VALUE ("simple-gitops"): prune must never treat the system's own
# objects as those of a service it deploys.
MANAGED_BY = "apply-gitops"

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_ABSENT = object()


@dataclass(frozen=True)
class _When:
    flag: str
    wanted: bool
    node: Any


def selector_labels(component: str, name: str = APP_NAME) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def labels(component: str, name: str = APP_NAME) -> dict[str, str]:
    return {
        **selector_labels(component, name),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


class _Loader(StrictLoader):
    pass


def _label_constructor(build: Any) -> Any:
    def construct(loader: _Loader, node: yaml.ScalarNode) -> dict[str, str]:
        component, _, app = str(loader.construct_scalar(node)).partition(" ")
        return dict(build(component, app or APP_NAME))

    return construct


def _when_constructor(wanted: bool) -> Any:
    def construct(loader: _Loader, flag: str, node: yaml.Node) -> _When:
        # The node again without its tag, read as it would have been untagged.
        marks = (node.start_mark, node.end_mark)
        plain: yaml.Node
        if isinstance(node, yaml.ScalarNode):
            tag = loader.resolve(yaml.ScalarNode, node.value, (not node.style, bool(node.style)))
            plain = yaml.ScalarNode(tag, node.value, *marks, style=node.style)
        elif isinstance(node, yaml.MappingNode):
            plain = yaml.MappingNode("tag:yaml.org,2002:map", node.value, *marks)
        else:
            plain = yaml.SequenceNode("tag:yaml.org,2002:seq", node.value, *marks)
        return _When(flag, wanted, loader.construct_object(plain, deep=True))

    return construct


_Loader.add_constructor("!labels", _label_constructor(labels))
_Loader.add_constructor("!selector", _label_constructor(selector_labels))
_Loader.add_multi_constructor("!if:", _when_constructor(True))
_Loader.add_multi_constructor("!unless:", _when_constructor(False))


def read_text(name: str) -> str:
    """A file of ``manifests/`` as it is (package data)."""
    return (resources.files(__package__) / "manifests" / name).read_text(encoding="utf-8")


def render(file: str, values: Mapping[str, Any], /, **more: Any) -> list[Obj]:
    """The documents of ``manifests/<file>`` with ``values`` (and ``more``) filled in."""
    return fill(read_text(file), {**values, **more})


def fill(text: str, values: Mapping[str, Any]) -> list[Obj]:
    """The documents of a manifest's text, filled in; a value it names but ``values``
    lacks is a KeyError (a bug of ours, not of the user's input)."""
    filled = [_fill(doc, values, {}) for doc in yaml.load_all(text, Loader=_Loader)]
    return [document for document in filled if document is not _ABSENT]


def _text(values: Mapping[str, Any], match: re.Match[str]) -> str:
    value = values[match[1]]
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise TypeError(f"${{{match[1]}}} inside a string needs text, got {value!r}")
    return str(value)


def _fill(node: Any, values: Mapping[str, Any], memo: dict[int, Any]) -> Any:
    if isinstance(node, _When):
        return _fill(node.node, values, memo) if bool(values[node.flag]) == node.wanted else _ABSENT
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole:
            value = values[whole[1]]
            return _ABSENT if value is None else value
        return _PLACEHOLDER.sub(lambda match: _text(values, match), node)
    if id(node) in memo:  # an alias of a node already filled
        return memo[id(node)]
    result: Any
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            filled = _fill(value, values, memo)
            if filled is not _ABSENT:
                result[key] = filled
    elif isinstance(node, list):
        result = []
        for item in node:
            filled = _fill(item, values, memo)
            if filled is _ABSENT:
                continue
            if isinstance(filled, list) and _stands_for_items(item):
                result.extend(filled)
            else:
                result.append(filled)
    else:
        return node
    memo[id(node)] = result
    return result


def _stands_for_items(item: Any) -> bool:
    return isinstance(item, _When) or (isinstance(item, str) and bool(_PLACEHOLDER.fullmatch(item)))


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings as literal blocks so scripts stay readable."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key, as kubectl and most hand-written YAML do.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def to_yaml(value: Any) -> str:
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def dump_documents(header: Iterable[str], documents: Iterable[Obj]) -> str:
    """``# header`` lines, then every object as its own ``---`` document."""
    lines = [f"# {line}".rstrip() for line in header]
    out = "\n".join(lines) + "\n" if lines else ""
    for document in documents:
        out += "---\n" + to_yaml(document)
    return out
