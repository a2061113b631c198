"""What the render stages share: the options of one render, the error it raises, and a
document together with the place it came from (so every message can name it)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class RenderOptions:
    """How to render one service at one commit.

    ``namespace`` is given to namespaced objects that have none ("" leaves them unset);
    ``stateless`` applies the seed's stateless pattern, whose pods download their start
    script and package from ``download_base_url``.
    """

    service: str
    base_dir: str
    commit: str
    namespace: str = ""
    stateless: bool = False
    download_base_url: str = ""


@dataclass(frozen=True)
class ServiceOptions:
    """Which files of a plain service directory are read, and whether the service's
    namespace is created.

    ``recurse`` reads subdirectories too; ``include`` (when given) and ``exclude`` are
    gitignore-style patterns relative to the service directory. None of them applies
    inside a kustomize build: kustomize reads what its kustomization names.
    ``create_namespace`` creates the service's ``namespace`` when it is missing.
    """

    recurse: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    create_namespace: bool = True


class RenderError(Exception):
    """The bundle cannot be made; ``errors`` lists every problem, each naming the file,
    the document and the field (``deploy/web/app.yaml: document 2: metadata.name:
    required``)."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Document:
    """One object of the bundle (not yet known to be valid) and where it came from:
    ``deploy/web/app.yaml: document 2``, ``...: items[0]`` for a List item, or a
    description of what generated it."""

    place: str
    obj: Any


def field_path(parts: Iterable[str | int]) -> str:
    """``metadata.labels["app.kubernetes.io/name"]``, ``spec.containers[0].env``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text
