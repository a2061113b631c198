"""FileApplyer: writes each rendered bundle to a directory instead of a cluster.

The embedded default on a laptop; the files are what ``kubectl apply -f`` would take.
Create-only objects are written as they are (their annotation says what they are).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from syncworker.applyers.base import Applyer, ApplyReport
from syncworker.applyers.manifests import first_service, load_objects
from syncworker.kube.refs import ObjectRef

FALLBACK_NAME = "bundle"


class FileApplyer(Applyer):
    can_prune = False

    def __init__(self, *, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def install(self) -> tuple[bool, str]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return False, f"cannot create {self.directory}: {exc}"
        if not os.access(self.directory, os.W_OK):
            return False, f"{self.directory} is not writable"
        return True, f"writing bundles to {self.directory}"

    def apply(self, yaml_content: str) -> tuple[bool, str]:
        report = self.apply_bundle(yaml_content)
        return report.ok, report.output

    def apply_bundle(
        self, yaml_content: str, *, held: Collection[ObjectRef] | None = None
    ) -> ApplyReport:
        """All of the bundle is written, or (a failure) none of it."""
        try:
            objects = load_objects(yaml_content)
        except ValueError as exc:
            return ApplyReport(False, f"invalid bundle: {exc}")
        ok, output = self._write(objects, yaml_content)
        if not ok:
            return ApplyReport(False, output)
        return ApplyReport.of_all(True, output, objects)

    def _write(self, objects: list[dict[str, Any]], yaml_content: str) -> tuple[bool, str]:
        root = self.directory.resolve()
        target = (root / f"{first_service(objects) or FALLBACK_NAME}.yaml").resolve()
        if target.parent != root:
            return False, f"refusing to write {target}: outside {root}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, yaml_content)
        except OSError as exc:
            return False, f"cannot write {target}: {exc}"
        return True, f"wrote {len(objects)} objects to {target}"


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old bundle or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
