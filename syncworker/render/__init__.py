"""Rendering: a service directory at a commit -> one validated, mutated bundle.

Pure functions over plain data (no database): ``render_service(read_dir, options)``
(plain directories and kustomize), and ``render_bundle(files, options)`` for a service
directory given as its files.
"""

from syncworker.render.base import RenderError, RenderOptions, ServiceOptions
from syncworker.render.bundle import Bundle, render_bundle
from syncworker.render.kustomize import BuildLimits
from syncworker.render.secrets import mask_bundle_yaml, mask_secrets
from syncworker.render.service import RenderResult, render_service

__all__ = [
    "BuildLimits",
    "Bundle",
    "RenderError",
    "RenderOptions",
    "RenderResult",
    "ServiceOptions",
    "mask_bundle_yaml",
    "mask_secrets",
    "render_bundle",
    "render_service",
]
