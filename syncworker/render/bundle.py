"""Turn the documents of a service into one bundle: validate -> mutate -> order -> dump.

The result depends only on the documents and the options (not on the order the files
came in), so the same commit always gives the same YAML and digest. Reading the service
directory (plain files, kustomize) is ``syncworker.render.service``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from syncworker.kube import hooks, kinds
from syncworker.kube.refs import ObjectRef
from syncworker.render import mutate, stateless, validate
from syncworker.render.base import Document, RenderError, RenderOptions
from syncworker.sources.base import SourceFile

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
    ``yaml``, ``refs`` name the objects for the inventory (hooks are created per
    deployment, never owned, so they are not among them). ``warnings`` name what was
    skipped (a YAML document that is no Kubernetes object), for the deployment record."""

    objects: tuple[dict[str, Any], ...]
    yaml: str
    digest: str
    refs: tuple[ObjectRef, ...]
    warnings: tuple[str, ...] = ()


def render_bundle(files: Sequence[SourceFile], options: RenderOptions) -> Bundle:
    """The bundle of a service directory given as its files (every file under
    ``options.base_dir``); a kustomization in it may use only directories inside it.
    Raises RenderError listing every problem, or UnsafePathError for a file outside
    ``options.base_dir``; nothing is returned unless all of it is valid."""
    # Imported here: the service module builds on this one.
    from syncworker.render.service import files_reader, render_service

    return render_service(files_reader(files, options.base_dir), options).bundle


def assemble(
    documents: list[Document],
    options: RenderOptions,
    *,
    errors: list[str],
    warnings: Sequence[str] = (),
) -> Bundle:
    """Validate, mutate and order ``documents`` into the bundle; raises RenderError with
    ``errors`` and every problem found here."""
    if options.stateless:
        documents = documents + stateless.config_maps(documents, options)
    validate.check_documents(documents, namespace=options.namespace, errors=errors)
    if errors:
        raise RenderError(errors)
    objects = sorted(mutate.mutate(documents, options), key=kinds.apply_order_key)
    return make_bundle(objects, warnings)


def make_bundle(objects: Sequence[dict[str, Any]], warnings: Sequence[str] = ()) -> Bundle:
    """The bundle of already rendered objects, kept in the order given."""
    text = dump_yaml(objects)
    return Bundle(
        objects=tuple(objects),
        yaml=text,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        refs=tuple(ObjectRef.of(obj) for obj in objects if not hooks.is_hook(obj)),
        warnings=tuple(warnings),
    )


def prepend(obj: dict[str, Any], bundle: Bundle) -> Bundle:
    """``bundle`` with ``obj`` first, as ``make_bundle`` would make it: documents dump
    one by one, so only the new one is dumped (the rest of the text is reused)."""
    text = dump_yaml([obj]) + bundle.yaml
    return Bundle(
        objects=(obj, *bundle.objects),
        yaml=text,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        refs=tuple(ObjectRef.of(o) for o in (obj, *bundle.objects) if not hooks.is_hook(o)),
        warnings=bundle.warnings,
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
