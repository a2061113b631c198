"""Reading artifacts back for HTTP: open a file, describe it (validators and type), and
work out which bytes a request asks for. The view only turns these into responses."""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.utils.http import parse_http_date_safe

from syncworker.artifacts.storage import ArtifactPathError, artifact_file
from syncworker.models import ReleaseArtifact

# mimetypes reports compression as an encoding; serving it as Content-Encoding would make
# clients unpack app.tar.gz on the fly, so the archive itself is the type.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
# Digits are bounded so a hostile header cannot make int() work hard (or raise).
_RANGE_SPEC = re.compile(r"^\s*(\d{0,30})\s*-\s*(\d{0,30})\s*$")


class ArtifactNotFound(Exception):
    """No regular file at that path under the artifacts root (or the path is unsafe)."""


class RangeNotSatisfiable(Exception):
    """The requested range starts past the end of the file."""


@dataclass
class OpenedArtifact:
    path: str
    file: BinaryIO
    size: int
    mtime: float
    etag: str
    content_type: str

    @property
    def last_modified(self) -> int:
        return int(self.mtime)


def guess_content_type(rel: str) -> str:
    if rel.endswith(".sh"):
        return "text/x-shellscript"
    guessed, encoding = mimetypes.guess_type(rel, strict=False)
    if encoding:
        return _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def describes_file(row_size: int, uploaded_at: datetime, st: os.stat_result) -> bool:
    """Whether a ReleaseArtifact row describes the file on disk: store_artifact sets the
    file's mtime to the row's upload time. A file copied in by hand, or one whose row
    update was rolled back, fails this and gets an ETag from the file itself."""
    return row_size == st.st_size and abs(st.st_mtime - uploaded_at.timestamp()) < 1.0


def locate_artifact(rel: str) -> Path:
    """The regular file ``rel`` names under the root, or ArtifactNotFound."""
    try:
        target = artifact_file(rel)
    except ArtifactPathError as exc:
        raise ArtifactNotFound(str(exc)) from None
    if not target.is_file():
        raise ArtifactNotFound(f"{rel!r}: no such file")
    return target


def open_artifact(rel: str) -> OpenedArtifact:
    """Open ``rel`` for reading. Size and validators come from the open descriptor, so they
    describe exactly the bytes that will be sent even if a new version is renamed in."""
    try:
        target = artifact_file(rel)
    except ArtifactPathError as exc:
        raise ArtifactNotFound(str(exc)) from None
    row = (
        ReleaseArtifact.objects.filter(path=rel)
        .values_list("size", "uploaded_at", "sha256", "content_type")
        .first()
    )
    try:
        # O_NONBLOCK: a FIFO in the root must not hang the worker (no effect on files).
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise ArtifactNotFound(f"{rel!r}: no such file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ArtifactNotFound(f"{rel!r}: not a regular file")
    etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    content_type = ""
    if row is not None:
        row_size, uploaded_at, sha256, content_type = row
        if describes_file(row_size, uploaded_at, st):
            etag = f'"{sha256}"'
    return OpenedArtifact(
        path=rel,
        file=os.fdopen(fd, "rb"),
        size=st.st_size,
        mtime=st.st_mtime,
        etag=etag,
        content_type=content_type or guess_content_type(rel),
    )


def requested_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(first, last)`` a ``Range`` header asks of a file of
    ``size`` bytes, or None to send the whole file: no or invalid header, another unit,
    several ranges (RFC 9110 lets a server ignore Range), or an empty file (no range of
    it can be expressed). RangeNotSatisfiable when it starts past the end."""
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or size == 0:
        return None
    ranges = [spec for spec in specs.split(",") if spec.strip()]
    if len(ranges) != 1:
        return None
    match = _RANGE_SPEC.match(ranges[0])
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(header)
        return max(size - suffix, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(int(last), size - 1) if last else size - 1


def if_range_allows(value: str, *, etag: str, last_modified: int) -> bool:
    """Whether a Range may be honoured given the request's ``If-Range`` (RFC 9110
    §13.1.5): an entity tag must match strongly, a date exactly. No header allows it."""
    value = value.strip()
    if not value:
        return True
    if value.startswith("W/"):
        return False
    if value.startswith('"'):
        return value == etag
    return parse_http_date_safe(value) == last_modified


class RangeFile:
    """``length`` bytes of ``file`` from ``offset``, then end of file: what a 206 streams.

    No ``fileno``: a WSGI server's sendfile would otherwise send to the end of the file.
    """

    def __init__(self, file: BinaryIO, offset: int, length: int) -> None:
        file.seek(offset)
        self._file = file
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        if size < 0 or size > self._remaining:
            size = self._remaining
        data = self._file.read(size)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._file.close()
