"""Writes ``manifests/requirements.txt``, the stock-image mode's pins, from ``uv.lock``.

    python -m syncworker.deployrender.lockexport           # rewrite it
    python -m syncworker.deployrender.lockexport --check   # exit 1 when it is stale

Committed rather than exported at render time: ``apply-gitops`` must work where neither
uv nor uv.lock is (an installed wheel, the built image). tests/test_deploy_render.py runs
the check, so a change to uv.lock cannot leave the stock image on old pins.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("manifests") / "requirements.txt"
UV_EXPORT = ("uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
             "--no-header", "--no-annotate")  # fmt: skip


def export_requirements(root: Path = ROOT) -> str:
    result = subprocess.run(UV_EXPORT, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(UV_EXPORT)} failed: {result.stderr.strip()}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncworker.deployrender.lockexport")
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    args = parser.parse_args(argv)
    wanted = export_requirements()
    current = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.exists() else ""
    if current == wanted:
        return 0
    if args.check:
        print(f"{REQUIREMENTS} is out of date with uv.lock; run {parser.prog}", file=sys.stderr)
        return 1
    REQUIREMENTS.write_text(wanted, encoding="utf-8")
    print(f"wrote {REQUIREMENTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
