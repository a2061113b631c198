"""Render one service at one commit: the entry point of the fetch stage.

A service directory with a kustomization is built by kustomize as a whole. Otherwise it
is a plain directory (``syncworker.render.tree`` chooses its files), whose
subdirectories with a kustomization are built as units beside the plain manifests.
Everything then goes through the same validate -> mutate path into one bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from syncworker.render import bundle as bundles
from syncworker.render import kustomize, namespaces, parse, tree, validate
from syncworker.render.base import Document, RenderError, RenderOptions, ServiceOptions
from syncworker.render.kustomization import ReadDir, RepoView, kustomization_file
from syncworker.sources.base import SourceFile, SourceNotFound, normalize_dir

# The content of one repository file at the commit, None when there is none.
ReadFile = Callable[[str], "bytes | None"]
DEFAULT_SERVICE_OPTIONS = ServiceOptions()
# Enough to tell what was skipped; a tree of thousands of non-manifests needs no more.
MAX_WARNINGS = 100


@dataclass(frozen=True)
class RenderResult:
    """The bundle; ``paths_read``, the repository paths the render read (directories,
    and the root ``.gitopsignore`` file when it was looked for), sorted: a commit that
    changes none of them renders the same bundle; ``namespace``, the Namespace to create
    before applying, if any."""

    bundle: bundles.Bundle
    paths_read: tuple[str, ...]
    namespace: dict[str, Any] | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.bundle.warnings


def render_service(
    read_dir: ReadDir,
    options: RenderOptions,
    *,
    service_options: ServiceOptions = DEFAULT_SERVICE_OPTIONS,
    read_file: ReadFile | None = None,
    limits: kustomize.BuildLimits = kustomize.DEFAULT_LIMITS,
    scratch: str | None = None,
) -> RenderResult:
    """Render the service directory ``options.base_dir``. ``read_dir(path)`` returns every
    file under a repository directory at the commit (``Source.read_tree``);
    ``read_file(path)`` one file, for the repository's root ``.gitopsignore``.

    Raises RenderError listing every problem, UnsafePathError for a path or symlink
    leaving the repository, SourceError when the repository cannot be read."""
    errors = validate.check_options(options)
    if errors:
        raise RenderError(errors)
    base = normalize_dir(options.base_dir)
    view = RepoView(read_dir)
    view.add(base, read_dir(base))
    warnings: list[str] = []
    extra_paths: list[str] = []
    if kustomization_file(view.files, base) is not None:
        documents = _build(base, view, limits, scratch, errors, warnings)
    else:
        root_ignore = None
        if base and read_file is not None:
            root_ignore = read_file(tree.IGNORE_FILE)
            extra_paths.append(tree.IGNORE_FILE)
        files = [SourceFile(path, data) for path, data in sorted(view.files.items())]
        selection = tree.select(files, base, service_options, root_ignore=root_ignore)
        manifests = validate.check_files(list(selection.manifests), errors)
        documents = parse.parse_files(
            manifests, base_dir=base, service=options.service, errors=errors, warnings=warnings
        )
        for unit in selection.kustomize_dirs:
            documents += _build(unit, view, limits, scratch, errors, warnings)
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS:] = [f"… and {len(warnings) - MAX_WARNINGS} more warnings"]
    result = bundles.assemble(documents, options, errors=errors, warnings=warnings)
    namespace = namespaces.namespace_to_create(
        result.objects,
        options.namespace,
        service=options.service,
        create=service_options.create_namespace,
    )
    return RenderResult(result, tuple(sorted([*view.paths_read(), *extra_paths])), namespace)


def _build(
    directory: str,
    view: RepoView,
    limits: kustomize.BuildLimits,
    scratch: str | None,
    errors: list[str],
    warnings: list[str],
) -> list[Document]:
    """The objects kustomize builds for ``directory``; its problems go to ``errors``."""
    try:
        built = kustomize.build(directory, view, limits=limits, scratch=scratch)
    except RenderError as exc:
        errors.extend(exc.errors)
        return []
    warnings.extend(built.warnings)
    output = SourceFile(f"{built.kustomization} (built)", built.yaml)
    documents = []
    for doc in parse.parse_yaml(output, errors):
        documents.append(Document(f"{doc.place}{_named(doc.obj)}", doc.obj))
    return documents


def _named(obj: Any) -> str:
    # A built document is easier to find by its kind and name than by its position.
    if not isinstance(obj, dict) or not isinstance(meta := obj.get("metadata"), dict):
        return ""
    kind, name = obj.get("kind"), meta.get("name")
    return f" ({kind} {name})" if isinstance(kind, str) and isinstance(name, str) else ""


def files_reader(files: Sequence[SourceFile], base_dir: str) -> ReadDir:
    """A ``read_dir`` over the files of directory ``base_dir``, already read: that
    directory (all of ``files``, which must lie in it) and any directory they hold."""
    base = normalize_dir(base_dir)
    held = sorted(files, key=lambda file: file.path)

    def read_dir(path: str) -> list[SourceFile]:
        directory = normalize_dir(path)
        if directory == base:
            return held
        prefix = f"{directory}/" if directory else ""
        found = [file for file in held if file.path.startswith(prefix)]
        if not found:
            raise SourceNotFound(f"{path!r} is not a directory at this commit")
        return found

    return read_dir
