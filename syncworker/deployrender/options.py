"""The command line of ``apply-gitops`` and ``RenderOptions``, what the renderer is told.

Every value is checked as argparse reads it, by the ``type`` of its option: a rule that
says what is wrong with a value (``syncworker.rules``, the rules of every door, where
one exists: names, web URLs; Kubernetes' DNS-1123 label rule). A bad value exits 2 with
``argument --option: problem`` before anything is rendered. The few rules between
options raise OptionError. No message ever quotes the value of a secret (a URL may hold
a password, a file a token).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path

from syncworker import rules
from syncworker.deployrender.rbac import DEFAULT_RESOURCES, Resources
from syncworker.kube.names import DNS_LABEL_RULE, is_dns_label

PACKAGE = "simple-gitops"
# Rendered from values given on the command line and the config file's secrets.
SECRETS_NAME = "gitops-secrets"
# Made once by the user (the header says how) and never rendered: rendering stays
# deterministic and re-applying never rotates a key.
CREDENTIALS_NAME = "gitops-credentials"
# ConfigMaps hold at most 1 MiB, and base64 grows a file by a third.
MAX_WHEEL_BYTES = 700 * 1024

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
_HOST = re.compile(r"(\*|\.?[a-z0-9]([-a-z0-9.]*[a-z0-9])?|\[[0-9a-f:.]+\])")


class OptionError(ValueError):
    """Options that cannot be used together."""


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the release namespace."""

    name: str
    key: str


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
    namespace: str
    image: str
    stock_image: bool
    # Stock-image mode: where pip gets the application; None means the gitops-app
    # ConfigMap (rendered from app_wheel when given).
    source_url: str | None
    app_wheel: tuple[str, bytes] | None = field(repr=False)
    pip_cache_claim: str | None
    fetch_workers: str
    replicas: int
    download_base_url: str | None
    allowed_hosts: tuple[str, ...]
    scope_namespaces: tuple[str, ...]  # empty: cluster-wide
    rbac_resources: Resources
    secret_key: Credential
    flower_auth: Credential
    postgres_password: Credential
    database_url: Credential | None  # None: the bundled PostgreSQL
    redis_url: Credential | None  # None: the bundled Redis
    storage_class: str | None
    artifacts_claim: str | None
    artifacts_size: str
    postgres_size: str

    @property
    def effective_download_base_url(self) -> str:
        return self.download_base_url or f"http://gitops-web.{self.namespace}.svc"


def _rule(problem_with: Callable[[str], str | None]) -> Callable[[str], str]:
    """An argparse ``type`` from a function that says what is wrong with a value."""

    def check(value: str) -> str:
        if problem := problem_with(value):
            raise argparse.ArgumentTypeError(problem)
        return value

    return check


def _shared(rule: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse ``type`` from one of syncworker.rules, the rules of every door."""

    def check(value: str) -> str:
        try:
            return rule(value)
        except rules.RuleError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


dns_label = _rule(lambda v: None if is_dns_label(v) else f"{v!r} is not {DNS_LABEL_RULE}")
quantity = _rule(lambda v: None if _QUANTITY.fullmatch(v) else f"{v!r} is not a size (e.g. 5Gi)")
image_ref = _rule(
    lambda v: (
        "expected an image reference such as python:3.11-slim"
        if not v or any(c.isspace() for c in v)
        else None
    )
)
cluster_name = _shared(rules.key)
web_url = _shared(rules.web_url)


def url_of(*schemes: str) -> Callable[[str], str]:
    # The URL may hold a password: the message names the schemes only.
    def problem(value: str) -> str | None:
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        ok = scheme in schemes and not any(char.isspace() for char in value)
        return None if ok else f"expected a {' or '.join(schemes)} URL"

    return _rule(problem)


def secret_file(path: str) -> str:
    """A secret from a file, stripped; the message never quotes the content."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path} is not UTF-8 text") from None
    if not value:
        raise argparse.ArgumentTypeError(f"{path} is empty")
    if "\n" in value:
        raise argparse.ArgumentTypeError(f"{path} must hold one line")
    return value


def user_password_file(path: str) -> str:
    value = secret_file(path)
    if ":" not in value:
        raise argparse.ArgumentTypeError("expected user:password")
    return value


def secret_ref(text: str) -> SecretRef:
    name, sep, key = text.partition(":")
    if not sep or not _SECRET_NAME.fullmatch(name) or not _SECRET_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError("expected NAME:KEY of a Secret (e.g. my-db:url)")
    return SecretRef(name, key)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number, at least 1")
    return int(text)


def hosts(text: str) -> tuple[str, ...]:
    names = tuple(h.strip().lower() for h in text.split(",") if h.strip())
    for name in names:
        if not _HOST.fullmatch(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a host name")
    return names


def scope(text: str) -> tuple[str, ...]:
    """``cluster`` -> (); ``namespaces=a,b`` -> ("a", "b"), sorted and de-duplicated."""
    if text == "cluster":
        return ()
    kind, sep, rest = text.partition("=")
    names = sorted({n.strip() for n in rest.split(",") if n.strip()})
    if kind != "namespaces" or not sep or not names:
        raise argparse.ArgumentTypeError("expected 'cluster' or 'namespaces=NS1,NS2'")
    return tuple(dns_label(name) for name in names)


def resources(text: str) -> Resources:
    """``configmaps,apps/deployments`` -> (("", "configmaps"), ("apps", "deployments"))."""
    result: list[tuple[str, str]] = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        group, _, resource = item.rpartition("/")
        group = "" if group in {"core", "v1"} else group
        if not _RESOURCE.fullmatch(resource) or (group and not _GROUP.fullmatch(group)):
            raise argparse.ArgumentTypeError(f"{item!r} is not RESOURCE or GROUP/RESOURCE")
        result.append((group, resource))
    if not result:
        raise argparse.ArgumentTypeError("give at least one resource")
    return tuple(result)


def wheel(path: str) -> tuple[str, bytes]:
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(content) > MAX_WHEEL_BYTES:
        raise argparse.ArgumentTypeError("too large for a ConfigMap; use --source-url")
    return Path(path).name, content


def _given(key: str, read: Callable[[str], str]) -> Callable[[str], Credential]:
    return lambda text: Credential(key, value=read(text))


def _in_secret(key: str) -> Callable[[str], Credential]:
    return lambda text: Credential(key, given_ref=secret_ref(text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--cluster-name", required=True, type=cluster_name, help="the cluster GitOps applies to")
    add("--config-file", required=True, help="the gitops-config.yaml to ship")
    add("--dry-run", action="store_true", help="print the YAML instead of applying it")
    add("--kubeconfig", help="for applying (default: $KUBECONFIG, ~/.kube/config)")
    add("--context", help="kubeconfig context for applying")
    add("--namespace", default="gitops", type=dns_label, help="default: %(default)s")

    group = parser.add_argument_group("image")
    add = group.add_argument
    add("--image", default="python:3.11-slim", type=image_ref,
        help="python:*-slim runs the stock-image mode (stock); any other image is one built "
        "from deploy/Dockerfile (default: %(default)s)")  # fmt: skip
    add("--runtime", choices=("auto", "stock", "image"), default="auto",
        help="override the mode --image implies (e.g. a mirror of python:3.11-slim)")  # fmt: skip
    source = group.add_mutually_exclusive_group()
    source.add_argument("--source-url", type=web_url, help="stock: a wheel or sdist to install")
    source.add_argument("--app-wheel", type=wheel, help="stock: ship this wheel (gitops-app)")
    add("--pip-cache-claim", type=dns_label, help="stock: a PVC for pip's cache")

    add = parser.add_argument_group("layout").add_argument
    add("--fetch-workers", choices=("daemonset", "deployment"), default="daemonset")
    add("--replicas", type=positive, default=1, help="web (and fetch Deployment) replicas")
    base_url = lambda v: web_url(v).rstrip("/")  # noqa: E731
    add("--download-base-url", type=base_url, help="default: http://gitops-web.NAMESPACE.svc")
    add("--allowed-hosts", default=(), type=hosts, help="more host names for the web server")
    add("--storage-class")
    add("--artifacts-claim", type=dns_label, help="a PVC of yours for release artifacts")
    add("--artifacts-size", default="1Gi", type=quantity)
    add("--postgres-size", default="5Gi", type=quantity)

    add = parser.add_argument_group("permissions of the apply worker").add_argument
    add("--scope", dest="scope_namespaces", default=(), type=scope, metavar="SCOPE",
        help="'cluster' (default) or 'namespaces=NS1,NS2' for Roles in those")  # fmt: skip
    kinds = ",".join(f"{g}/{r}" if g else r for g, r in DEFAULT_RESOURCES)
    add("--resources", type=resources, help=f"RESOURCE or GROUP/RESOURCE, default: {kinds}")
    add("--add-resources", type=resources, help="kinds added to those")

    group = parser.add_argument_group(
        "secrets",
        "A value given is rendered into the Secret gitops-secrets; NAME:KEY reads a Secret of "
        "yours; by default each is read from the Secret gitops-credentials, which you create.",
    )
    for option, key, read, what in (
        ("--secret-key-file", "secret-key", secret_file, "Django's SECRET_KEY"),
        ("--flower-auth-file", "flower-basic-auth", user_password_file, "Flower's user:password"),
        ("--postgres-password-file", "postgres-password", secret_file, "the bundled PostgreSQL's"),
        (
            "--database-url",
            "database-url",
            url_of("postgres", "postgresql"),
            "an external PostgreSQL",
        ),
        ("--redis-url", "redis-url", url_of("redis", "rediss"), "an external Redis"),
    ):
        stem = option[2:].removesuffix("-file")
        file = option.endswith("-file")
        # No URL given: the bundled PostgreSQL or Redis.
        default = Credential(key) if file else None
        add = group.add_mutually_exclusive_group().add_argument
        add(option, dest=stem.replace("-", "_"), default=default, metavar="FILE" if file else "URL",
            type=_given(key, read), help=what)  # fmt: skip
        add(f"--{stem}-secret", dest=stem.replace("-", "_"), default=default, metavar="NAME:KEY",
            type=_in_secret(key))  # fmt: skip


def is_stock_image(image: str) -> bool:
    """``python:3.11-slim``, ``docker.io/library/python:3.12-slim-bookworm``; not a
    mirror (whose content we cannot know) nor a digest-only reference."""
    reference = image.split("@", 1)[0]
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        return False
    parts = repository.split("/")
    if len(parts) > 1 and parts[0] in {"docker.io", "index.docker.io"}:
        parts = parts[1:]
    return parts in (["python"], ["library", "python"]) and "slim" in tag


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise OptionError(f"the {PACKAGE} package is not installed (run uv sync)") from None
    stock = is_stock_image(args.image) if args.runtime == "auto" else args.runtime == "stock"
    for name in ("source_url", "app_wheel", "pip_cache_claim"):
        if getattr(args, name) and not stock:
            flag = "--" + name.replace("_", "-")
            raise OptionError(f"{flag}: only for the stock-image mode (python:*-slim)")
    prefix = f"{PACKAGE.replace('-', '_')}-{version}-"
    if args.app_wheel and not re.fullmatch(re.escape(prefix) + r".*\.whl", args.app_wheel[0]):
        raise OptionError(f"--app-wheel: expected {prefix}*.whl, the version being rendered")
    if args.database_url is not None and not args.postgres_password.expected_from_user:
        raise OptionError("--postgres-password-*: only for the bundled PostgreSQL")
    given = {f.name: getattr(args, f.name) for f in fields(RenderOptions) if f.name in vars(args)}
    resources = (args.resources or DEFAULT_RESOURCES) + (args.add_resources or ())
    return RenderOptions(**given, version=version, stock_image=stock, rbac_resources=resources)
