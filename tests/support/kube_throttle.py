"""Make the real kube-apiserver answer 429 on demand, through API Priority and Fairness.

A ServiceAccount of its own (cluster-admin through RBAC, but outside ``system:masters``,
whose requests APF exempts) is, from the first :meth:`Throttle.held` on, classified by a
FlowSchema onto a PriorityLevelConfiguration without seats
(``nominalConcurrencyShares: 0``, nothing to borrow, ``limitResponse: Reject``). APF
still dispatches a request to such a level when nothing executes there, so ``held()``
keeps one request of the account executing: the CREATE of a labelled ConfigMap, which a
deliberately slow admission webhook holds. While it is held, every other request of the
account that the FlowSchema matches is refused by the apiserver itself with 429 Too Many
Requests and ``Retry-After``.

The webhook is a loopback HTTPS server in this process with a throwaway self-signed
certificate; it only delays its "allowed" answer and stands in for nothing.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tests.support.kubeenv import KubeTestEnv

HOLD_LABEL = "simple-gitops.test/hold"
_FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"
_WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


class Throttle:
    """Use as a context manager; ``kubeconfig`` then connects as the throttled account.

    ``verbs`` and ``resources`` (core API group) in ``namespace`` are what the FlowSchema
    sends to the seatless level; everything else the account does is served as usual.
    """

    def __init__(
        self,
        kube_env: KubeTestEnv,
        namespace: str,
        *,
        verbs: tuple[str, ...] = ("create", "patch"),
        resources: tuple[str, ...] = ("configmaps",),
    ) -> None:
        self.kube_env = kube_env
        self.namespace = namespace
        self.verbs = verbs
        self.resources = resources
        self.name = f"throttle-{uuid.uuid4().hex[:8]}"
        self.dir = Path(tempfile.mkdtemp(prefix="gitops-throttle-"))
        self.kubeconfig = self.dir / "kubeconfig"
        self.token = ""
        self._webhook = _SlowWebhook(self.dir)
        self._created: list[str] = []

    def __enter__(self) -> Throttle:
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._teardown()

    def _setup(self) -> None:
        ns, name = self.namespace, self.name
        self._post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}})
        self._post(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            },
        )
        status, answer = self._request(
            "POST",
            f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            {"spec": {"expirationSeconds": 3600}},
        )
        if status != 201:
            raise RuntimeError(f"TokenRequest: {status} {answer!r}")
        self.token = answer["status"]["token"]
        config = json.loads(self.kube_env.kubeconfig.read_text())
        config["users"][0]["user"] = {"token": self.token}
        self.kubeconfig.write_text(json.dumps(config))
        self.kubeconfig.chmod(0o600)

    def _jail(self) -> None:
        """The seatless level, the FlowSchema onto it and the slow webhook."""
        name, ns = self.name, self.namespace
        self._post(
            f"{_FLOWCONTROL}/prioritylevelconfigurations",
            {
                "metadata": {"name": name},
                "spec": {
                    "type": "Limited",
                    "limited": {
                        "nominalConcurrencyShares": 0,
                        "lendablePercent": 0,
                        "borrowingLimitPercent": 0,
                        "limitResponse": {"type": "Reject"},
                    },
                },
            },
        )
        self._post(
            f"{_FLOWCONTROL}/flowschemas",
            {
                "metadata": {"name": name},
                "spec": {
                    "priorityLevelConfiguration": {"name": name},
                    "matchingPrecedence": 100,  # before the defaults for service accounts
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [
                        {
                            "subjects": [
                                {
                                    "kind": "ServiceAccount",
                                    "serviceAccount": {"name": name, "namespace": ns},
                                }
                            ],
                            "resourceRules": [
                                {
                                    "verbs": list(self.verbs),
                                    "apiGroups": [""],
                                    "resources": list(self.resources),
                                    "namespaces": [ns],
                                }
                            ],
                        }
                    ],
                },
            },
        )
        self._webhook.start()
        self._post(
            _WEBHOOKS,
            {
                "metadata": {"name": name},
                "webhooks": [
                    {
                        "name": "hold.simple-gitops.test",
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{self._webhook.port}/hold",
                            "caBundle": base64.b64encode(self._webhook.cert_pem).decode(),
                        },
                        "rules": [
                            {
                                "operations": ["CREATE"],
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "resources": ["configmaps"],
                                "scope": "Namespaced",
                            }
                        ],
                        "objectSelector": {"matchLabels": {HOLD_LABEL: name}},
                        "failurePolicy": "Ignore",
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 30,
                    }
                ],
            },
        )

    def _teardown(self) -> None:
        self._webhook.release.set()
        for path in reversed(self._created):
            self._request("DELETE", path, None)
        self._webhook.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _post(self, collection: str, body: dict[str, Any]) -> None:
        status, data = self._request("POST", collection, body)
        if status != 201:
            raise RuntimeError(f"POST {collection}: {status} {data!r}")
        self._created.append(f"{collection}/{body['metadata']['name']}")

    def _request(self, method: str, path: str, body: Any, *, token: str = "") -> tuple[int, Any]:
        """A raw request, as the admin or (``token``) as another user."""
        response = requests.request(
            method,
            self.kube_env.server + path,
            json=body,
            headers={"Authorization": f"Bearer {token or self.kube_env.token}"},
            verify=str(self.kube_env.ca_file),
            timeout=40,
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def probe(self) -> requests.Response:
        """A PATCH of the account that the FlowSchema matches (of a ConfigMap that need
        not exist): 429 while a request is held, 404 or 200 otherwise."""
        return requests.patch(
            f"{self.kube_env.server}/api/v1/namespaces/{self.namespace}/configmaps/probe",
            data="{}",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/merge-patch+json",
            },
            verify=str(self.kube_env.ca_file),
            timeout=40,
        )

    @contextmanager
    def held(self, *, timeout: float = 30.0) -> Iterator[requests.Response]:
        """Keep the level busy; yields a probe's 429 answer. Until the first call the
        account is served like any other (the jail is built here), and the apiserver
        takes a moment to act on new flow-control objects and webhooks: wait for that."""
        if not self._webhook.port:
            self._jail()
        deadline = time.monotonic() + timeout
        while True:
            self._webhook.release.clear()
            self._webhook.arrived.clear()
            holder = threading.Thread(target=self._hold, daemon=True)
            holder.start()
            answer = None
            if self._webhook.arrived.wait(2.0):
                answer = self.probe()
            if answer is not None and answer.status_code == 429:
                break
            self._webhook.release.set()
            holder.join(40)
            if time.monotonic() > deadline:
                got = "the webhook was not called" if answer is None else answer.status_code
                raise RuntimeError(f"the apiserver did not throttle ({got})")
            time.sleep(0.2)
        try:
            yield answer
        finally:
            self._webhook.release.set()
            holder.join(40)

    def _hold(self) -> None:
        name = f"hold-{uuid.uuid4().hex[:8]}"
        body = {"metadata": {"name": name, "labels": {HOLD_LABEL: self.name}}}
        path = f"/api/v1/namespaces/{self.namespace}/configmaps"
        self._request("POST", path, body, token=self.token)


class _SlowWebhook:
    """A validating admission webhook that allows everything, once ``release`` is set."""

    def __init__(self, directory: Path) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        key, cert = directory / "webhook.key", directory / "webhook.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.cert_pem = cert.read_bytes()
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> None:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.arrived.set()
                webhook.release.wait(25)  # the apiserver gives up after 30 s
                body = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": True},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = self._context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
