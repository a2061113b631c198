"""Sync waves: the annotation that orders objects across a bundle, as Argo CD defines it.

Lower waves apply first, default 0, negative allowed; within a wave, today's kind order.
Our own annotation wins over Argo CD's when an object carries both.
"""

from __future__ import annotations

from typing import Any

ARGO_WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
WAVE_ANNOTATION = "simple-gitops.io/sync-wave"


def wave_of(obj: dict[str, Any]) -> int:
    """The wave of ``obj``; ValueError naming the annotation when it is not an integer."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    for key in (WAVE_ANNOTATION, ARGO_WAVE_ANNOTATION):
        value = annotations.get(key)
        if value is None:
            continue
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(
                f"metadata.annotations[{key}]: {value!r} is not an integer wave"
            ) from None
    return 0


def wave_or_zero(obj: dict[str, Any]) -> int:
    """``wave_of``, for applyers: render already refused a bad value."""
    try:
        return wave_of(obj)
    except ValueError:
        return 0
