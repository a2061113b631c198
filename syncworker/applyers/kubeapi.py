"""A thin layer over the official Kubernetes client: connection, raw requests, discovery.

The generated API classes deserialise every answer into models; applying a thousand
objects spends more time there than on the wire, so requests go through
``ApiClient.param_serialize`` + ``call_api`` (auth, TLS and pooling of the official client)
and answers stay JSON.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from syncworker.applyers.base import TransientApplyError

IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
USER_AGENT = "simple-gitops"
AUTH_REFRESH_SECONDS = 10.0
# 500s that retrying cannot fix: server-side apply answers a field the schema does not
# know with one of these instead of a 4xx.
PERMANENT_SERVER_ERRORS = ("failed to create typed patch object",)


class KubeConfigError(Exception):
    """The cluster cannot be reached as configured (bad kubeconfig, context, TLS)."""


@dataclass(frozen=True)
class Response:
    status: int
    data: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.data)

    def message(self) -> str:
        """The ``message`` of a Status answer, else the start of the body."""
        try:
            body = json.loads(self.data)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
        text = self.data.decode(errors="replace").strip()[:300]
        return f"HTTP {self.status}" + (f": {text}" if text else "")


def load_configuration(
    *, kubeconfig: str | None, context: str | None, max_connections: int
) -> tuple[k8s_client.Configuration, str]:
    """A client configuration of our own (never the global default) and its namespace."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            namespace = _context_namespace(kubeconfig, context)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
            namespace = _in_cluster_namespace()
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster service account"
        raise KubeConfigError(f"cannot load {where}: {exc}") from exc
    configuration.connection_pool_maxsize = max_connections
    # Connection errors only; an apply is never resent after the server got it.
    configuration.retries = urllib3.Retry(
        total=2, connect=2, read=0, status=0, redirect=0, backoff_factor=0.2
    )
    return configuration, namespace or "default"


def _context_namespace(kubeconfig: str, context: str | None) -> str | None:
    contexts, current = k8s_config.list_kube_config_contexts(kubeconfig)
    wanted = context or (current or {}).get("name")
    for entry in contexts or []:
        if entry.get("name") == wanted:
            return (entry.get("context") or {}).get("namespace")
    return None


def _in_cluster_namespace() -> str | None:
    try:
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


class KubeApi:
    """Raw JSON requests to one API server through a per-applyer ``ApiClient``.

    Unreachable servers, timeouts, 429 and 5xx raise TransientApplyError; any other
    status comes back as a Response for the caller to judge. Safe to share between threads.
    """

    def __init__(self, configuration: k8s_client.Configuration, *, timeout: float) -> None:
        self.server = configuration.host
        self._client = k8s_client.ApiClient(configuration)
        self._timeout = (min(10.0, timeout), timeout)
        self._auth_lock = threading.Lock()
        self._auth_headers: dict[str, str] = {}
        self._auth_expires = 0.0

    def close(self) -> None:
        self._client.close()

    def _auth(self) -> dict[str, str]:
        """The Authorization header, refreshed every few seconds rather than per request.

        The client's refresh hook (token files, exec plugins, expiry checks) runs on every
        header it builds and costs more than the rest of a request on our side.
        """
        now = time.monotonic()
        if now >= self._auth_expires:
            with self._auth_lock:
                if now >= self._auth_expires:
                    headers: dict[str, str] = {}
                    self._client.update_params_for_auth(
                        headers, [], ["BearerToken"], "", "GET", None
                    )
                    self._auth_headers = headers
                    self._auth_expires = now + AUTH_REFRESH_SECONDS
        return self._auth_headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: str | dict[str, Any] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Response:
        """One request; a str ``body`` is sent as is, a dict is JSON-encoded."""
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {
            "Accept": accept,
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            **self._auth(),
        }
        try:
            raw = self._client.call_api(
                method,
                self.server + path,
                header_params=headers,
                body=body,
                _request_timeout=self._timeout,
            )
            data = raw.read()
        except urllib3.exceptions.HTTPError as exc:
            raise TransientApplyError(f"{self.server} unreachable: {_reason(exc)}") from exc
        except ApiException as exc:  # TLS failures: a certificate will not fix itself
            raise KubeConfigError(f"{self.server}: {exc.reason}") from exc
        response = Response(raw.status, data or b"", dict(raw.headers))
        if response.status == 429 or (
            response.status >= 500 and not _is_permanent(response.message())
        ):
            raise TransientApplyError(
                f"{self.server} answered {method} {path.split('?')[0]}: {response.message()}",
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        return response


def _is_permanent(message: str) -> bool:
    return any(marker in message for marker in PERMANENT_SERVER_ERRORS)


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        root = "apis" if "/" in self.api_version else "api"
        return f"/{root}/{self.api_version}"

    def collection(self, namespace: str) -> str:
        """The list path: of ``namespace`` for a namespaced kind, else of the cluster."""
        where = f"/namespaces/{quote(namespace, safe='')}" if self.namespaced else ""
        return f"{self.prefix}{where}/{self.plural}"

    def path(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{quote(name, safe='')}"

    def display(self, name: str) -> str:
        """``deployment.apps/web``, as kubectl names objects in its output."""
        group = self.api_version.rpartition("/")[0]
        return f"{self.kind.lower()}{'.' + group if group else ''}/{name}"


class Discovery:
    """Kinds served per group/version, fetched on first use and cached for ``max_age``
    seconds (a CRD recreated with another scope must not be addressed by its old path).

    Used from the thread that drives an apply or prune, never from the worker threads.
    """

    def __init__(self, api: KubeApi, *, max_age: float = 600.0) -> None:
        self._api = api
        self._max_age = max_age
        self._cache: dict[str, tuple[float, dict[str, Resource]]] = {}

    def resolve(self, api_version: str, kind: str, *, refresh: bool = True) -> Resource | None:
        """The resource of a kind; on a miss the group/version is fetched again once."""
        found = self._kinds(api_version).get(kind)
        if found is None and refresh:
            self.forget(api_version)
            found = self._kinds(api_version).get(kind)
        return found

    def forget(self, api_version: str) -> None:
        self._cache.pop(api_version, None)

    def _kinds(self, api_version: str) -> dict[str, Resource]:
        now = time.monotonic()
        cached = self._cache.get(api_version)
        if cached is None or now - cached[0] > self._max_age:
            cached = self._cache[api_version] = (now, self._fetch(api_version))
        return cached[1]

    def _fetch(self, api_version: str) -> dict[str, Resource]:
        prefix = Resource(api_version, "", "", False).prefix
        response = self._api.request("GET", prefix)
        if response.status == 404:
            return {}
        if response.status != 200:
            raise KubeConfigError(f"discovery of {api_version} failed: {response.message()}")
        kinds: dict[str, Resource] = {}
        for entry in response.json().get("resources") or []:
            if "/" in entry["name"]:  # subresources such as deployments/scale
                continue
            kinds[entry["kind"]] = Resource(
                api_version, entry["kind"], entry["name"], bool(entry.get("namespaced"))
            )
        return kinds
