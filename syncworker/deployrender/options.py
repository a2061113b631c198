"""What the renderer is told: ``RenderOptions``, and the checks that turn command-line text
into it. Every problem raises ``OptionError`` with a message naming the option, never
the value of a secret."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from syncworker import rules
from syncworker.kube.names import is_dns_label

DEFAULT_NAMESPACE = "gitops"
DEFAULT_IMAGE = "python:3.11-slim"
# Rendered from values given on the command line and the config file's tokens.
SECRETS_NAME = "gitops-secrets"
# Made once by the user (the header says how) and never rendered: rendering stays
# deterministic and re-applying never rotates a key.
CREDENTIALS_NAME = "gitops-credentials"

# The kinds GitOps may apply and prune: (API group, resource). RBAC kinds are left out on
# purpose (see deploy/README.md): add them with --add-resources if services ship Roles.
DEFAULT_RESOURCES: tuple[tuple[str, str], ...] = (
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("", "namespaces"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "networkpolicies"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
)

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
_HOST = re.compile(r"(\*|\.?[a-z0-9]([-a-z0-9.]*[a-z0-9])?|\[[0-9a-f:.]+\])")


class OptionError(ValueError):
    """An option value cannot be used."""


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the release namespace."""

    name: str
    key: str

    @classmethod
    def parse(cls, text: str, option: str) -> SecretRef:
        name, sep, key = text.partition(":")
        if not sep or not _SECRET_NAME.fullmatch(name) or not _SECRET_KEY.fullmatch(key):
            raise OptionError(f"{option}: expected NAME:KEY of a Secret (e.g. my-db:url)")
        return cls(name, key)


@dataclass(frozen=True)
class Credential:
    """A secret value the pods need: either given (rendered into gitops-secrets) or a
    reference to a Secret that exists or that the user creates."""

    key: str  # its key in gitops-secrets / gitops-credentials
    value: str | None = field(default=None, repr=False)
    given_ref: SecretRef | None = None

    @property
    def ref(self) -> SecretRef:
        if self.value is not None:
            return SecretRef(SECRETS_NAME, self.key)
        return self.given_ref or SecretRef(CREDENTIALS_NAME, self.key)

    @property
    def expected_from_user(self) -> bool:
        """True when nothing was given: the key must be in gitops-credentials."""
        return self.value is None and self.given_ref is None


@dataclass(frozen=True)
class RenderOptions:
    cluster_name: str
    version: str
    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    stock_image: bool = True
    # Stock-image mode: where pip gets the application; None means the gitops-app
    # ConfigMap (rendered from app_wheel when given).
    source_url: str | None = None
    app_wheel: tuple[str, bytes] | None = field(default=None, repr=False)
    pip_cache_claim: str | None = None
    fetch_workers: str = "daemonset"
    replicas: int = 1
    download_base_url: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    scope_namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    rbac_resources: tuple[tuple[str, str], ...] = DEFAULT_RESOURCES
    secret_key: Credential = Credential("secret-key")
    flower_auth: Credential = Credential("flower-basic-auth")
    postgres_password: Credential = Credential("postgres-password")
    database_url: Credential | None = None  # None: the bundled PostgreSQL
    redis_url: Credential | None = None  # None: the bundled Redis
    storage_class: str | None = None
    artifacts_claim: str | None = None
    artifacts_size: str = "1Gi"
    postgres_size: str = "5Gi"

    @property
    def web_host(self) -> str:
        return f"gitops-web.{self.namespace}.svc"

    @property
    def effective_download_base_url(self) -> str:
        return self.download_base_url or f"http://{self.web_host}"


def check_dns_label(value: str, option: str) -> str:
    if not is_dns_label(value):
        raise OptionError(f"{option}: {value!r} is not a DNS-1123 label")
    return value


def check_quantity(value: str, option: str) -> str:
    if not _QUANTITY.fullmatch(value):
        raise OptionError(f"{option}: {value!r} is not a size (e.g. 5Gi)")
    return value


def check_image(value: str) -> str:
    if not value or any(char.isspace() for char in value):
        raise OptionError("--image: expected an image reference such as python:3.11-slim")
    return value


def check_download_base_url(value: str) -> str:
    try:
        return rules.web_url(value).rstrip("/")
    except rules.RuleError as exc:
        raise OptionError(f"--download-base-url: {exc}") from None


def check_source_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise OptionError("--source-url: expected an http(s) URL of a wheel or sdist")
    return value


def parse_hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in text.split(",") if h.strip())
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise OptionError(f"--allowed-hosts: {host!r} is not a host name")
    return hosts


def parse_scope(text: str) -> tuple[str, ...]:
    """``cluster`` -> (); ``namespaces=a,b`` -> ("a", "b"), sorted and de-duplicated."""
    if text == "cluster":
        return ()
    kind, sep, rest = text.partition("=")
    names = sorted({n.strip() for n in rest.split(",") if n.strip()})
    if kind != "namespaces" or not sep or not names:
        raise OptionError("--scope: expected 'cluster' or 'namespaces=NS1,NS2'")
    for name in names:
        check_dns_label(name, "--scope")
    return tuple(names)


def parse_resources(text: str, option: str) -> tuple[tuple[str, str], ...]:
    """``configmaps,apps/deployments`` -> (("", "configmaps"), ("apps", "deployments"))."""
    result: list[tuple[str, str]] = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        group, _, resource = item.rpartition("/")
        if group in {"core", "v1"}:
            group = ""
        if not _RESOURCE.fullmatch(resource) or (group and not _GROUP.fullmatch(group)):
            raise OptionError(f"{option}: {item!r} is not RESOURCE or GROUP/RESOURCE")
        result.append((group, resource))
    if not result:
        raise OptionError(f"{option}: give at least one resource")
    return tuple(result)


def read_secret_file(path: str, option: str) -> str:
    """A secret from a file, stripped; the message never quotes the content."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise OptionError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OptionError(f"{option}: {path} is not UTF-8 text") from None
    if not value:
        raise OptionError(f"{option}: {path} is empty")
    if "\n" in value:
        raise OptionError(f"{option}: {path} must hold one line")
    return value


def check_url_scheme(value: str, option: str, schemes: tuple[str, ...]) -> str:
    # The URL may hold a password: name the option and the scheme only.
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in schemes or any(char.isspace() for char in value):
        raise OptionError(f"{option}: expected a {' or '.join(schemes)} URL")
    return value
