"""Render a service directory into one bundle: parse -> validate -> mutate -> order -> dump.

The result depends only on the files and the options (not on the order the files came
in), so the same commit always gives the same YAML and digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from syncworker.kube import kinds
from syncworker.kube.refs import ObjectRef
from syncworker.render import mutate, parse, stateless, validate
from syncworker.render.base import RenderError, RenderOptions
from syncworker.sources.base import SourceFile, normalize_dir

try:
    from yaml import CSafeDumper as _SafeDumper
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]


class _Dumper(_SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # Anchors and aliases are valid YAML but make a bundle hard to read and diff.
        return True


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    # Multi-line values (configuration files, scripts) as readable blocks; the emitter
    # falls back to a quoted style by itself when a block cannot hold the value.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


@dataclass(frozen=True)
class Bundle:
    """The objects to apply, in apply order, and their YAML; ``digest`` is the sha256 of
    ``yaml``, ``refs`` name the objects for the inventory."""

    objects: tuple[dict[str, Any], ...]
    yaml: str
    digest: str
    refs: tuple[ObjectRef, ...]


def render_bundle(files: Sequence[SourceFile], options: RenderOptions) -> Bundle:
    """Raises RenderError listing every problem of the bundle, or UnsafePathError for a
    file outside ``options.base_dir``; nothing is returned unless all of it is valid."""
    errors = validate.check_options(options)
    if errors:
        raise RenderError(errors)
    base_dir = normalize_dir(options.base_dir)
    selected = validate.check_files(parse.select_files(files, base_dir), errors)
    documents = parse.parse_files(
        selected, base_dir=base_dir, service=options.service, errors=errors
    )
    if options.stateless:
        documents += stateless.config_maps(documents, options)
    validate.check_documents(documents, namespace=options.namespace, errors=errors)
    if errors:
        raise RenderError(errors)
    objects = sorted(mutate.mutate(documents, options), key=kinds.apply_order_key)
    return make_bundle(objects)


def make_bundle(objects: Sequence[dict[str, Any]]) -> Bundle:
    """The bundle of already rendered objects, kept in the order given."""
    text = dump_yaml(objects)
    return Bundle(
        objects=tuple(objects),
        yaml=text,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        refs=tuple(ObjectRef.of(obj) for obj in objects),
    )


def dump_yaml(objects: Sequence[dict[str, Any]]) -> str:
    return yaml.dump_all(
        objects,
        Dumper=_Dumper,
        sort_keys=True,
        explicit_start=True,
        allow_unicode=True,
        default_flow_style=False,
    )
