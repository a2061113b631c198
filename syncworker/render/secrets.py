"""Hide Secret values wherever a rendered bundle is shown (API, admin, diffs).

The stored bundle keeps the values (it is what gets applied, and re-applied on a
rollback); every view of it goes through ``mask_secrets`` or ``mask_bundle_yaml``, the
render floor's names for the one rule in ``syncworker.kube.secrets``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncworker.kube.secrets import MASK, mask_secret, mask_secret_values

__all__ = ["MASK", "mask_bundle_yaml", "mask_secrets"]


def mask_secrets(objects: Iterable[Any]) -> list[Any]:
    """Copies of ``objects`` with every value of a Secret's ``data`` and ``stringData``
    (and a last-applied annotation, which repeats them) replaced by ``MASK``; the keys
    stay, so people still see what a Secret holds."""
    return [mask_secret(obj) if isinstance(obj, dict) else obj for obj in objects]


def mask_bundle_yaml(text: str) -> str:
    """``text`` (multi-document YAML, as a bundle is stored) with its Secrets masked."""
    return mask_secret_values(text)
