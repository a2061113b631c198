"""A test cluster where workloads roll out: the test kube-apiserver plus the upstream
kube-controller-manager and kube-scheduler, and kwok playing the kubelet for fake nodes.

:class:`KubeClusterEnv` is a :class:`~tests.support.kubeenv.KubeTestEnv` that also starts, on
loopback, with credentials of their own as a real cluster gives them:

- ``kube-controller-manager`` as user ``system:kube-controller-manager`` (a client certificate
  signed by the cluster's CA), each controller with its own service-account token
  (``--use-service-account-credentials``); it also runs the token controller, so pods get their
  tokens again and the ``ServiceAccount`` admission plugin is on;
- ``kube-scheduler`` as user ``system:kube-scheduler`` (client certificate);
- ``kwok`` as the ServiceAccount ``kube-system/kwok-controller`` with kwok's own RBAC (a
  TokenRequest token signed by the server's key), managing the Node objects created here with
  its annotation. Its stages are kwokctl's defaults (nodes become Ready and renew their leases;
  pods become Running and Ready, Jobs' pods complete, deleted pods go) plus its volume stages
  (a claim on the default ``kwok-volume`` StorageClass is provisioned and bound) and one of its
  chaos stages: a pod labelled ``FAILING_POD_LABEL=true`` fails with exit code 1, so a Job
  whose pod template carries the label fails (a failing hook).

No container runs: images are never pulled and probes are never called; a pod is Ready as soon
as kwok marks it so. Pod IPs are fake (10.244.0.0/16) and nothing routes to them; every node's
InternalIP is 127.0.0.1, so an API server request for logs or exec gets "connection refused"
on loopback instead of going anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from tests.support.kubeenv import (
    TESTENV_DIR,
    KubeTestEnv,
    KubeTestEnvError,
    _free_ports,
    _tail,
    kubeconfig_document,
    stop_process_group,
    write_private,
)

CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
KWOK_NAMESPACE = "kube-system"
KWOK_SERVICE_ACCOUNT = "kwok-controller"

# What kwok's docs put on the nodes it should manage; kwok is told to manage only those.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
POD_CIDR = "10.244.0.0/16"
NODE_IP = "127.0.0.1"
NODE_CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
KWOK_TOKEN_SECONDS = 7 * 24 * 3600
# kwok's chaos stage, kept in the repository: a pod labelled FAILING_POD_LABEL=true fails.
FAILING_POD_STAGE = TESTENV_DIR / "stages" / "pod-container-running-failed.yaml"
FAILING_POD_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"


@dataclass
class Component:
    """One process of the cluster next to the API server, with its log."""

    name: str
    command: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, cwd: Path) -> None:
        self.log_file = self.log_path.open("wb")
        env = dict(os.environ)
        # Our builds of the upstream commands stop when this process is gone (kill -9 of pytest).
        env["TESTENV_EXIT_WITH_PARENT"] = "1"
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self.log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self.log_file.close()
            self.log_file = None
            raise KubeTestEnvError(f"cannot run {self.command[0]}: {exc}") from exc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc)
        log_file, self.log_file = self.log_file, None
        if log_file is not None:
            log_file.close()

    def log_tail(self, max_lines: int = 40) -> str:
        return _tail(self.log_path, max_lines)


class KubeClusterEnv(KubeTestEnv):
    """The test API server plus controller-manager, scheduler and ``nodes`` kwok nodes.

    Besides what :class:`KubeTestEnv` offers after start: ``node_names``, ``components``
    (name -> :class:`Component`, each with its ``log_path`` in ``workdir``) and ``kwok_dir`` (the
    stage, RBAC and StorageClass manifests from the kwok module). :meth:`start` returns once
    every node is Ready, the ``default`` ServiceAccount exists and both controllers answer their
    health checks.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        nodes: int = 3,
        bin_dir: Path | None = None,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(
            workdir,
            bin_dir=bin_dir,
            startup_timeout=startup_timeout,
            extra_args=extra_args,
            keep_workdir=keep_workdir,
        )
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.components: dict[str, Component] = {}
        self.kwok_dir = Path()
        self.pki_dir = Path()
        self._ports: dict[str, int] = {}

    @property
    def running(self) -> bool:
        return super().running and all(c.running for c in self.components.values())

    def exit_report(self) -> str:
        for component in self.components.values():
            if not component.running:
                return f"{component.name} exited; log tail:\n{component.log_tail()}"
        return super().exit_report()

    # -- hooks of KubeTestEnv ------------------------------------------------------------------

    def _prepare(self) -> None:
        self.kwok_dir = self.bin_dir.parent / "kwok"
        for path in [
            self.bin_dir / n for n in ("kube-controller-manager", "kube-scheduler", "kwok")
        ]:
            if not os.access(path, os.X_OK):
                raise KubeTestEnvError(f"{path} is missing or not executable")
        for name in ("stages.yaml", "rbac.yaml", "storage-class.yaml"):
            if not (self.kwok_dir / name).is_file():
                raise KubeTestEnvError(f"{self.kwok_dir / name} is missing (build.sh writes it)")
        self.pki_dir = self.workdir / "pki"
        self.pki_dir.mkdir(exist_ok=True)
        # One cluster CA, as kubeadm makes it: it signs the API server's serving certificate
        # (so clients and the kube-root-ca.crt ConfigMaps trust a real CA, not a self-signed
        # leaf) and the components' client certificates.
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(self.pki_dir / "ca.key"), "-out", str(self.pki_dir / "ca.crt"),
            "-days", "3650", "-subj", "/CN=kube-testenv-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip
        self.ca_file = self.pki_dir / "ca.crt"
        self._certificate(
            "apiserver", "kube-apiserver", "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1",
        )  # fmt: skip
        for user in (CONTROLLER_MANAGER_USER, SCHEDULER_USER):
            name = user.removeprefix("system:")
            self._certificate(name, user, "clientAuth")
            credentials = {
                "client-certificate": str(self.pki_dir / f"{name}.crt"),
                "client-key": str(self.pki_dir / f"{name}.key"),
            }
            config = kubeconfig_document(self.server, self.ca_file, user, credentials)
            write_private(self.workdir / f"{name}.kubeconfig", json.dumps(config, indent=2))
        # What an authenticating front proxy would present; the controllers' delegated
        # authentication reads it from the extension-apiserver-authentication ConfigMap.
        self._certificate("front-proxy-client", "front-proxy-client", "clientAuth")
        self._ports = dict(
            zip(("kube-controller-manager", "kube-scheduler"), _free_ports(2), strict=True)
        )

    def _apiserver_flags(
        self, cert_dir: Path, token_file: Path, sa_key: Path, sa_pub: Path
    ) -> list[str]:
        flags = [
            f
            for f in super()._apiserver_flags(cert_dir, token_file, sa_key, sa_pub)
            # The token controller runs here: the ServiceAccount admission plugin works again.
            if f != "--disable-admission-plugins=ServiceAccount"
        ]
        pki = self.pki_dir
        return [
            *flags,
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            # Logs, exec and port-forward go to a node's InternalIP (127.0.0.1, nothing
            # listens), never to a name that would need a DNS lookup.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _after_ready(self) -> None:
        self._start_controllers()
        self._install_kwok()
        self._wait_cluster_ready()

    def _before_stop(self) -> None:
        # kwok first, the API server last: each can still reach the server while it stops.
        for component in reversed(list(self.components.values())):
            component.stop()

    # -- start-up ------------------------------------------------------------------------------

    def _certificate(self, name: str, common_name: str, usage: str, *extensions: str) -> None:
        """``pki/NAME.crt`` and ``.key``: an EC key and a certificate the cluster CA signs."""
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(self.pki_dir / f"{name}.key"),
            "-out", str(self.pki_dir / f"{name}.crt"),
            "-CA", str(self.pki_dir / "ca.crt"), "-CAkey", str(self.pki_dir / "ca.key"),
            "-days", "3650", "-subj", f"/CN={common_name}",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature",
            "-addext", f"extendedKeyUsage={usage}",
            *[arg for ext in extensions for arg in ("-addext", ext)],
        )  # fmt: skip

    def _serving_cert(self, name: str) -> Path:
        """The self-signed serving certificate a controller writes to its ``--cert-dir``."""
        return self.workdir / f"{name}-certs" / f"{name}.crt"

    def _start_controllers(self) -> None:
        (self.workdir / "flexvolume").mkdir(exist_ok=True)
        kcm_kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        scheduler_kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        common = ["--bind-address=127.0.0.1", "--leader-elect=false", "--v=1"]
        self._add_component(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                f"--secure-port={self._ports['kube-controller-manager']}",
                f"--cert-dir={self._serving_cert('kube-controller-manager').parent}",
                *common,
                # Each controller acts with its own service account, as kubeadm sets it up.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca_file}",
                f"--cluster-signing-cert-file={self.pki_dir / 'ca.crt'}",
                f"--cluster-signing-key-file={self.pki_dir / 'ca.key'}",
                "--service-cluster-ip-range=10.0.0.0/16",
                # Its default is a directory under /usr/libexec, which it would create.
                f"--flex-volume-plugin-dir={self.workdir / 'flexvolume'}",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ],
        )
        self._add_component(
            "kube-scheduler",
            [
                f"--kubeconfig={scheduler_kubeconfig}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                f"--secure-port={self._ports['kube-scheduler']}",
                f"--cert-dir={self._serving_cert('kube-scheduler').parent}",
                *common,
            ],
        )

    def _install_kwok(self) -> None:
        applied = subprocess.run(
            self.kubectl_command(
                "apply", "--server-side", "--field-manager=kube-testenv",
                "-f", str(self.kwok_dir / "rbac.yaml"),
                "-f", str(self.kwok_dir / "storage-class.yaml"),
            ),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if applied.returncode != 0:
            raise KubeTestEnvError(f"installing kwok's RBAC failed: {applied.stderr.strip()}")
        token = self._api(
            "POST",
            f"/api/v1/namespaces/{KWOK_NAMESPACE}/serviceaccounts/{KWOK_SERVICE_ACCOUNT}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": KWOK_TOKEN_SECONDS},
            },
        )["status"]["token"]
        config = kubeconfig_document(
            self.server, self.ca_file, f"system:serviceaccount:{KWOK_NAMESPACE}:kwok-controller",
            {"token": token},
        )  # fmt: skip
        kwok_kubeconfig = write_private(self.workdir / "kwok.kubeconfig", json.dumps(config))
        for name in self.node_names:
            self._api("POST", "/api/v1/nodes", _node(name), ok_if_exists=True)
        self._add_component(
            "kwok",
            [
                f"--kubeconfig={kwok_kubeconfig}",
                f"--config={self.kwok_dir / 'stages.yaml'}",
                f"--config={FAILING_POD_STAGE}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector="
                f"{KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
                # Leases keep the nodes alive for the node lifecycle controller (kwokctl's 40 s).
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                f"--node-ip={NODE_IP}",
            ],
        )

    def _add_component(self, name: str, args: list[str]) -> None:
        component = Component(name, [str(self.bin_dir / name), *args], self.workdir / f"{name}.log")
        self.components[name] = component
        component.start(self.workdir)

    def _wait_cluster_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        waiting: dict[str, str] = {}
        with requests.Session() as session:
            while True:
                for component in self.components.values():
                    if not component.running:
                        code = None if component.proc is None else component.proc.returncode
                        raise KubeTestEnvError(
                            f"{component.name} exited with code {code} before the cluster was "
                            f"ready; log tail ({component.log_path}):\n{component.log_tail()}"
                        )
                waiting = self._not_ready(session)
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    raise KubeTestEnvError(
                        f"test cluster not ready after {self.startup_timeout:.0f}s: "
                        + "; ".join(f"{k}: {v}" for k, v in waiting.items())
                    )
                time.sleep(0.2)

    def _not_ready(self, session: requests.Session) -> dict[str, str]:
        """What is not ready yet (component -> why); empty when the cluster is."""
        waiting: dict[str, str] = {}
        for name, path in (("kube-controller-manager", "/healthz"), ("kube-scheduler", "/readyz")):
            cert = self._serving_cert(name)
            if not cert.exists():
                waiting[name] = "no serving certificate yet"
                continue
            try:
                answer = session.get(
                    f"https://127.0.0.1:{self._ports[name]}{path}", verify=str(cert), timeout=5
                )
                if answer.status_code != 200:
                    waiting[name] = f"{path}: HTTP {answer.status_code} {answer.text[-200:]}"
            except requests.RequestException as exc:
                waiting[name] = f"{path}: {type(exc).__name__}: {exc}"
        headers = {"Authorization": f"Bearer {self.token}"}
        account = session.get(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
            headers=headers, verify=str(self.ca_file), timeout=5,
        )  # fmt: skip
        if account.status_code != 200:
            waiting["serviceaccount default/default"] = f"HTTP {account.status_code}"
        nodes = session.get(
            f"{self.server}/api/v1/nodes", headers=headers, verify=str(self.ca_file), timeout=5
        )
        ready: set[str] = set()
        if nodes.status_code == 200:
            ready = {n["metadata"]["name"] for n in nodes.json()["items"] if _node_ready(n)}
        missing = [name for name in self.node_names if name not in ready]
        if missing:
            waiting["kwok nodes"] = f"not Ready: {', '.join(missing)}"
        return waiting

    # -- helpers -------------------------------------------------------------------------------

    def _api(
        self, method: str, path: str, body: dict[str, Any], *, ok_if_exists: bool = False
    ) -> dict[str, Any]:
        response = requests.request(
            method,
            f"{self.server}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.ca_file),
            timeout=30,
        )
        if ok_if_exists and response.status_code == 409:
            return {}
        if response.status_code >= 300:
            raise KubeTestEnvError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KubeTestEnvError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _node(name: str) -> dict[str, Any]:
    """A Node as kwok's docs describe one, with its annotation; kwok fills in the status
    (conditions, node info) and keeps the lease."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "status": {
            "capacity": NODE_CAPACITY,
            "allocatable": NODE_CAPACITY,
            "addresses": [
                {"type": "InternalIP", "address": NODE_IP},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
