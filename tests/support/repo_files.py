"""Repository layouts kept under ``tests/data/repos`` and ways to read them.

``disk_reader`` stands in for ``Source.read_tree`` where a test is about rendering, not
Git: it answers the same contract (every regular file under a directory, sorted,
repository-relative paths; a missing directory is a SourceNotFound). Tests that are about
what Git gives (symlinks, the exact commit) read through the real Git source instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from syncworker.sources.base import SourceFile, SourceNotFound, normalize_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "repos" / "examples"


def disk_files(root: Path = EXAMPLES) -> dict[str, bytes]:
    """Every file under ``root`` by its path relative to it, as a commit would hold them."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def disk_reader(
    files: dict[str, bytes], calls: list[str] | None = None
) -> Callable[[str], list[SourceFile]]:
    """A ``read_dir`` over ``files``; each directory asked for is appended to ``calls``."""

    def read_dir(path: str) -> list[SourceFile]:
        directory = normalize_dir(path)
        if calls is not None:
            calls.append(directory)
        prefix = f"{directory}/" if directory else ""
        found = [SourceFile(p, data) for p, data in sorted(files.items()) if p.startswith(prefix)]
        if not found:
            raise SourceNotFound(f"{path!r} is not a directory at commit c0ffee")
        return found

    return read_dir
