"""A real Kubernetes API server for tests and benchmarks: embedded etcd + kube-apiserver.

The binaries come from ``tools/k8s-testenv`` (built once per version into a cache outside the
repository by ``tools/k8s-testenv/build.sh``). :class:`KubeTestEnv` starts one server on free
loopback ports with RBAC on, a generated service-account signing key and an admin bearer token
(group ``system:masters``), writes a kubeconfig for it and waits for ``/readyz``. There is no
kubelet, scheduler or controller-manager: objects are stored and validated, nothing runs them.
:class:`tests.support.kubecluster.KubeClusterEnv` adds those (``--cluster``).

By hand (and from benchmarks)::

    python -m tests.support.kubeenv            # prints the server, kubeconfig, export line
    python -m tests.support.kubeenv --cluster  # the same, plus controllers and kwok nodes
    export KUBECONFIG=/tmp/kube-testenv-.../kubeconfig
    kubectl get ns                             # the printed kubectl, or any kubectl

It runs until Ctrl-C or SIGTERM and then stops the server and removes its directory.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTENV_DIR = REPO_ROOT / "tools" / "k8s-testenv"
BUILD_SCRIPT = TESTENV_DIR / "build.sh"
VERSION_FILE = TESTENV_DIR / "K8S_VERSION"

# Set to a directory holding the binaries build.sh builds (and, for the cluster, its ../kwok
# directory) to skip build.sh.
BIN_DIR_ENV = "SIMPLE_GITOPS_K8S_TESTENV_BIN"

ADMIN_USER = "admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"  # a test session creates hundreds of Services
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class KubeTestEnvError(RuntimeError):
    """The test API server could not be built, started or stopped."""


def pinned_version() -> str:
    """The Kubernetes version the test environment is built at, e.g. ``v1.37.2``."""
    return VERSION_FILE.read_text().strip()


def ensure_built() -> Path:
    """Build (once) the test binaries and return the directory that holds them.

    Runs ``tools/k8s-testenv/build.sh``, which does nothing when the binaries for the current
    sources are already in the cache; build progress goes to this process's stderr.
    """
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        bin_dir = Path(override)
    else:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            check=False,
        )
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise KubeTestEnvError(
                f"{BUILD_SCRIPT} failed with exit code {result.returncode}; "
                "see its output above (it needs `go` and the Go module proxy)"
            )
        bin_dir = Path(lines[-1])
    for name in ("kube-apiserver-testenv", "kubectl"):
        if not os.access(bin_dir / name, os.X_OK):
            raise KubeTestEnvError(f"{bin_dir / name} is missing or not executable")
    return bin_dir


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 a moment ago (all held open together so they differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# Repeated while etcd is unreachable (e.g. while shutting down); they bury the real error.
_LOG_NOISE = ("addrConn.createTransport failed", "setting up serving from embedded etcd failed")


def _tail(path: Path, max_lines: int = 40) -> str:
    """The last lines of a log, without gRPC reconnect noise."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    lines = [line for line in text.splitlines() if not any(n in line for n in _LOG_NOISE)]
    return "\n".join(lines[-max_lines:])


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM to the process group ``proc`` leads (started with ``start_new_session``), SIGKILL
    after ``timeout`` seconds; waits for it, and kills anything left in the group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def kubeconfig_document(
    server: str, ca_file: Path, user: str, credentials: dict[str, str]
) -> dict[str, object]:
    """A kubeconfig with one cluster, one user (``credentials``: token or client certificate
    files) and one context; JSON is YAML, so kubectl and every client read it as written."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kube-testenv",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": "kube-testenv", "context": {"cluster": "kube-testenv", "user": user}}
        ],
        "current-context": "kube-testenv",
        "preferences": {},
    }


def write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (it holds a credential)."""
    path.write_text(text)
    path.chmod(0o600)
    return path


class KubeTestEnv:
    """One kube-apiserver with an embedded etcd on free loopback ports.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. After start:

    - ``server``: ``https://127.0.0.1:PORT``
    - ``token``: bearer token of ``admin`` (group ``system:masters``)
    - ``kubeconfig``: path of a kubeconfig with that token and the server's CA
    - ``ca_file``: what verifies the serving certificate (the self-signed bundle kube-apiserver
      writes to ``--cert-dir``; the cluster CA in a ``KubeClusterEnv``)
    - ``kubectl``: path of kubectl built at the same version
    - ``workdir``: the directory holding keys, certificates, etcd data and ``apiserver.log``
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
        keep_workdir: bool = False,
    ) -> None:
        self._requested_workdir = workdir
        self._bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.keep_workdir = keep_workdir or workdir is not None

        self.workdir = Path()
        self.server = ""
        self.port = 0
        self.token = ""
        self.kubeconfig = Path()
        self.ca_file = Path()
        self.kubectl = Path()
        self.bin_dir = Path()
        self.apiserver_binary = Path()
        self.log_path = Path()
        self.sa_key = Path()
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> KubeTestEnv:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The apiserver's process id (etcd runs inside it), 0 when not started."""
        return self._proc.pid if self._proc is not None else 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> KubeTestEnv:
        """Start etcd + kube-apiserver and return once ``/readyz`` answers ok."""
        if self._proc is not None:
            raise KubeTestEnvError("already started")
        bin_dir = self._bin_dir or ensure_built()
        self.bin_dir = bin_dir
        self.apiserver_binary = bin_dir / "kube-apiserver-testenv"
        self.kubectl = bin_dir / "kubectl"

        if self._requested_workdir is not None:
            self.workdir = self._requested_workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="kube-testenv-"))
        cert_dir = self.workdir / "certs"
        cert_dir.mkdir(exist_ok=True)
        self.ca_file = cert_dir / "apiserver.crt"
        self.log_path = self.workdir / "apiserver.log"

        self.port, etcd_client_port, etcd_peer_port = _free_ports(3)
        self.server = f"https://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(32)
        token_file = self.workdir / "tokens.csv"
        token_file.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        token_file.chmod(0o600)
        sa_key, sa_pub = self._make_service_account_key()
        self.sa_key = sa_key

        self._prepare()
        command = [
            str(self.apiserver_binary),
            f"--etcd-listen-client-port={etcd_client_port}",
            f"--etcd-listen-peer-port={etcd_peer_port}",
            f"--etcd-data-dir={self.workdir / 'etcd'}",
            # Should this Python process die without stopping it, the server stops itself.
            "--exit-with-parent",
            "--",
            *self._apiserver_flags(cert_dir, token_file, sa_key, sa_pub),
            *self.extra_args,
        ]
        log_file = self.log_path.open("wb")
        self._log_file = log_file
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise KubeTestEnvError(f"cannot run {self.apiserver_binary}: {exc}") from exc
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._write_kubeconfig()
        try:
            self._after_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL) and wait for it."""
        atexit.unregister(self.stop)
        self._before_stop()
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc)
        log_file = self._log_file
        self._log_file = None
        if log_file is not None:
            log_file.close()
        if not self.keep_workdir and self.workdir != Path() and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- hooks for KubeClusterEnv -------------------------------------------------------------

    def _prepare(self) -> None:
        """Called with the work directory made, before kube-apiserver starts."""

    def _apiserver_flags(
        self, cert_dir: Path, token_file: Path, sa_key: Path, sa_pub: Path
    ) -> list[str]:
        """The kube-apiserver flags (everything after ``--`` but the extra ones)."""
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The "kubernetes" Service may not point at a loopback address: keep no endpoints.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.port}",
            f"--cert-dir={cert_dir}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # No controller-manager creates the "default" service account of a namespace, so
            # the ServiceAccount admission plugin would refuse every Pod (as envtest does).
            "--disable-admission-plugins=ServiceAccount",
        ]

    def _after_ready(self) -> None:
        """Called once ``/readyz`` answers and the kubeconfig is written."""

    def _before_stop(self) -> None:
        """Called first by :meth:`stop` (also after a failed start)."""

    # -- helpers -----------------------------------------------------------------------------

    def exit_report(self) -> str:
        """What to tell a person when :attr:`running` turned false on its own."""
        return f"kube-apiserver exited; log tail:\n{self.log_tail()}"

    def log_tail(self, max_lines: int = 40) -> str:
        """The end of the apiserver's (and embedded etcd's) log."""
        return _tail(self.log_path, max_lines)

    def kubectl_command(self, *args: str) -> list[str]:
        """A kubectl command line against this server, ready for subprocess."""
        return [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args]

    def environ(self) -> dict[str, str]:
        """Environment variables that point clients (kubectl, the Python client) here."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "K8S_TESTENV_SERVER": self.server,
            "K8S_TESTENV_TOKEN": self.token,
        }

    def _make_service_account_key(self) -> tuple[Path, Path]:
        key = self.workdir / "sa.key"
        pub = self.workdir / "sa.pub"
        for cmd in (
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", str(key)],
            ["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
        ):  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise KubeTestEnvError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
        return key, pub

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        headers = {"Authorization": f"Bearer {self.token}"}
        last = "no answer yet"
        with requests.Session() as session:
            while True:
                proc = self._proc
                if proc is None or proc.poll() is not None:
                    code = None if proc is None else proc.returncode
                    raise KubeTestEnvError(
                        f"kube-apiserver-testenv exited with code {code} before it was ready; "
                        f"log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise KubeTestEnvError(
                        f"kube-apiserver at {self.server} not ready after "
                        f"{self.startup_timeout:.0f}s (last: {last}); "
                        f"log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                # The serving certificate is written to --cert-dir before the port opens.
                if self.ca_file.exists():
                    try:
                        response = session.get(
                            f"{self.server}/readyz",
                            headers=headers,
                            verify=str(self.ca_file),
                            timeout=5,
                        )
                        if response.status_code == 200:
                            return
                        last = f"HTTP {response.status_code}: {response.text.strip()[-300:]}"
                    except requests.RequestException as exc:
                        last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.1)

    def _write_kubeconfig(self) -> None:
        config = kubeconfig_document(self.server, self.ca_file, ADMIN_USER, {"token": self.token})
        self.kubeconfig = write_private(
            self.workdir / "kubeconfig", json.dumps(config, indent=2) + "\n"
        )


class _StopRequested(Exception):
    """Raised by the SIGTERM/SIGHUP handler of the command line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.kubeenv",
        description="Run a real kube-apiserver (with embedded etcd) until Ctrl-C or SIGTERM; "
        "with --cluster also kube-controller-manager, kube-scheduler and kwok nodes.",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also run kube-controller-manager, kube-scheduler and kwok with fake nodes",
    )
    parser.add_argument(
        "--nodes", type=int, default=3, help="number of kwok nodes with --cluster (3)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="directory for keys, etcd data and logs (kept at exit)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for /readyz (and, with --cluster, ready nodes) (120)",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="only build; print the bin directory"
    )
    parser.add_argument("apiserver_args", nargs="*", help="extra kube-apiserver flags (after --)")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")

    if args.build_only:
        print(ensure_built(), flush=True)
        return 0

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        raise _StopRequested(signum)

    # SIGTERM and SIGHUP end it like Ctrl-C: through the finally below, which stops the server.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGHUP, request_stop)

    env: KubeTestEnv
    if args.cluster:
        from tests.support.kubecluster import KubeClusterEnv  # it builds on this module

        env = KubeClusterEnv(
            args.workdir,
            nodes=args.nodes,
            startup_timeout=args.timeout,
            extra_args=args.apiserver_args,
        )
    else:
        env = KubeTestEnv(
            args.workdir, startup_timeout=args.timeout, extra_args=args.apiserver_args
        )
    try:
        env.start()
        print(f"server: {env.server}", flush=True)
        print(f"kubeconfig: {env.kubeconfig}", flush=True)
        print(f"kubectl: {env.kubectl}", flush=True)
        print(f"log: {env.log_path}", flush=True)
        print(f"ready in: {env.startup_seconds:.1f}s", flush=True)
        print(f"export KUBECONFIG={env.kubeconfig}", flush=True)
        while env.running:
            time.sleep(0.5)
        print(env.exit_report(), file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _StopRequested):
        return 0
    except KubeTestEnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        env.stop()


if __name__ == "__main__":
    sys.exit(main())
