"""What the render stages share: the options of one render, the error it raises, and a
document together with the place it came from (so every message can name it)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
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


def is_dns_label(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) <= 253 and DNS_SUBDOMAIN.fullmatch(value) is not None
    )


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


def type_name(value: object) -> str:
    # bool before int: a YAML true is a Python int too.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
