"""Rendering: a service directory at a commit -> one validated, mutated bundle.

Pure functions over plain data (no database): ``render_bundle(files, options)``.
"""

from syncworker.render.base import RenderError, RenderOptions
from syncworker.render.bundle import Bundle, render_bundle

__all__ = ["Bundle", "RenderError", "RenderOptions", "render_bundle"]
