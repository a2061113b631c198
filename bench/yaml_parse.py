"""6. YAML: parsing a large manifest set with libyaml's C loader and the pure loader.

5,000 generated documents (quick: 1,000) of the same mix as the apply benchmark
(ConfigMaps, Deployments, Services), parsed with ``yaml.load_all`` and
``yaml.CSafeLoader``, ``yaml.SafeLoader``, and the product's own bundle reader
(``syncworker.applyers.manifests.load_objects``, built on the C loader); the best of
three runs each (quick: one). No target: the ratio says what the C loader is worth.
"""

from __future__ import annotations

from typing import Any

import yaml

from bench.common import Context, best_of, mixed_objects, to_yaml


def run(ctx: Context) -> dict[str, Any]:
    from syncworker.applyers.manifests import load_objects

    count = ctx.count(5000, 1000)
    repeat = ctx.count(3, 1)
    text = to_yaml(mixed_objects(count, "doc", namespace="bench"))
    if not hasattr(yaml, "CSafeLoader"):
        raise RuntimeError("PyYAML was built without libyaml: no CSafeLoader")
    c_seconds, c_docs = best_of(lambda: list(yaml.load_all(text, Loader=yaml.CSafeLoader)), repeat)
    pure_seconds, pure_docs = best_of(
        lambda: list(yaml.load_all(text, Loader=yaml.SafeLoader)), repeat
    )
    ours_seconds, ours_docs = best_of(lambda: load_objects(text), repeat)
    if not (len(c_docs) == len(pure_docs) == len(ours_docs) == count) or c_docs != pure_docs:
        raise RuntimeError("the loaders disagree about the documents")
    return {
        "documents": count,
        "bytes": len(text.encode()),
        "repeat": repeat,
        "c_loader_s": round(c_seconds, 4),
        "pure_loader_s": round(pure_seconds, 4),
        "product_load_objects_s": round(ours_seconds, 4),
        "pure_over_c": round(pure_seconds / c_seconds, 2),
        "c_documents_per_second": round(count / c_seconds),
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    return {}


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    n = result["documents"]
    return [
        (
            f"parse {n:,} documents ({result['bytes'] / 1e6:.1f} MB), CSafeLoader",
            f"{result['c_loader_s']:.2f} s ({result['c_documents_per_second']:,} docs/s)",
        ),
        ("  SafeLoader (pure Python)", f"{result['pure_loader_s']:.2f} s"),
        ("  ratio pure / C", f"{result['pure_over_c']:.1f}x"),
        ("  product's load_objects (C loader)", f"{result['product_load_objects_s']:.2f} s"),
    ]
