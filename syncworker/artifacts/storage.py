"""Where artifacts live on disk, and how they get there.

Every path, whether from a URL, a form or the API, goes through ``safe_artifact_path`` and
then ``artifact_file``, which resolves symlinks and checks the result is still under
``GITOPS["ARTIFACTS_ROOT"]``: nothing outside the root is ever read or written.

A new version is written to a hidden temporary file in the target's directory, fsynced
and renamed over the target, so a reader sees the old file or the new one, never half of
one. Hidden names (a leading ``.``) are therefore never valid artifact paths.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from django.conf import settings
from django.db import transaction

from syncworker.models import ReleaseArtifact

KINDS: tuple[str, ...] = tuple(ReleaseArtifact.Kind.values)
MAX_PATH_LENGTH = 500
CHUNK_SIZE = 1024 * 1024


class ArtifactPathError(ValueError):
    """A path that names no file under the artifacts root."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def artifacts_root() -> Path:
    return Path(str(settings.GITOPS["ARTIFACTS_ROOT"]))


def _fully_unquoted(value: str) -> str:
    # A few rounds undo double encoding (%252e -> %2e -> .); more would be an attack.
    for _ in range(4):
        decoded = unquote(value)
        if decoded == value:
            break
        value = decoded
    return value


def _path_problem(rel: str) -> str:
    if not rel:
        return "it is empty"
    if rel.startswith("/"):
        return "absolute paths are not allowed"
    if "\\" in rel:
        return "backslashes are not allowed"
    if any(ord(char) < 32 or ord(char) == 127 for char in rel):
        return "control characters (NUL included) are not allowed"
    segments = rel.split("/")
    if segments[0] not in KINDS:
        return f"it must start with one of {', '.join(kind + '/' for kind in KINDS)}"
    if len(segments) < 2:
        return "it names a directory, not a file"
    for segment in segments:
        if segment == "":
            return "empty segments (a leading, trailing or doubled '/') are not allowed"
        if segment in (".", ".."):
            return "'.' and '..' segments are not allowed"
        if segment.startswith("."):
            return "hidden names (a leading '.') are reserved for uploads in progress"
    return ""


def safe_artifact_path(rel: str) -> str:
    """``rel`` unchanged when it is a safe relative path under one of the kinds
    (``scripts/``, ``apps/``, ``configs/``); ArtifactPathError naming it otherwise."""
    if len(rel) > MAX_PATH_LENGTH:
        raise ArtifactPathError(
            f"{rel[:60]!r}... is not a valid artifact path: longer than {MAX_PATH_LENGTH}"
            " characters"
        )
    problem = _path_problem(rel)
    decoded = _fully_unquoted(rel)
    if not problem and decoded != rel:
        # Something downstream (a proxy, nginx serving the root) may decode once more.
        problem = _path_problem(decoded)
        problem = problem and f"after percent-decoding, {problem}"
    if problem:
        raise ArtifactPathError(f"{rel!r} is not a valid artifact path: {problem}")
    return rel


def artifact_file(rel: str) -> Path:
    """The file ``rel`` names under the artifacts root, its directory resolved.

    Symlinks inside the root are followed, but neither the directory nor the file may
    resolve outside it. The last component is kept as is, so a write replaces a symlink
    rather than the file it points to.
    """
    rel = safe_artifact_path(rel)
    root = artifacts_root().resolve()
    lexical = root / rel
    directory = lexical.parent.resolve()
    for resolved in (directory, lexical.resolve()):
        if resolved == root or not resolved.is_relative_to(root):
            raise ArtifactPathError(f"{rel!r} leads outside the artifacts root")
    return directory / lexical.name


def writable_artifact_file(rel: str) -> Path:
    """``artifact_file`` plus the checks a write needs: the path is not a directory and
    no existing parent of it is a file."""
    target = artifact_file(rel)
    if target.is_dir():
        raise ArtifactPathError(f"{rel!r} is a directory under the artifacts root")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ArtifactPathError(f"{rel!r}: a parent of it ({parent.name}) is a file")
            break
    return target


def _write_temp(fileobj: Readable, directory: Path, name: str) -> tuple[Path, str, int]:
    """Stream ``fileobj`` to a new hidden file in ``directory``; its path, sha256, size."""
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".upload")
    temp = Path(temp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := fileobj.read(CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp creates 0600; a web server serving the root may run as another user.
        temp.chmod(0o644)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, digest.hexdigest(), size


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable, not only the file's content.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_artifact(
    rel: str, fileobj: Readable, *, uploaded_by: str, content_type: str = ""
) -> ReleaseArtifact:
    """Write ``fileobj`` at ``rel`` under the artifacts root, atomically, and record it.

    If reading or writing fails midway, the previous version (file and row) is untouched.
    """
    target = writable_artifact_file(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp, sha256, size = _write_temp(fileobj, target.parent, target.name)
    try:
        # The row is locked until the rename is done, so concurrent uploads of one path
        # leave the file and the row describing the same version.
        with transaction.atomic():
            artifact, _ = ReleaseArtifact.objects.update_or_create(
                path=rel,
                defaults={
                    "kind": rel.split("/", 1)[0],
                    "size": size,
                    "sha256": sha256,
                    "content_type": content_type,
                    "uploaded_by": uploaded_by,
                },
            )
            # The file's mtime is the row's upload time: serving trusts the row's checksum
            # only for the file it describes (see serving.describes_file).
            stamp = artifact.uploaded_at.timestamp()
            os.utime(temp, (stamp, stamp))
            os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return artifact


def delete_artifact(rel: str) -> bool:
    """Remove the file at ``rel`` and its row; False when there was neither."""
    target = artifact_file(rel)
    with transaction.atomic():
        deleted, _ = ReleaseArtifact.objects.filter(path=rel).delete()
        try:
            target.unlink()
        except FileNotFoundError:
            return deleted > 0
    return True
