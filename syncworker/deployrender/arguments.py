"""The command line of ``apply-gitops``: its options, and their conversion into
``RenderOptions``. Every problem raises OptionError naming the option."""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

from syncworker import rules
from syncworker.deployrender import options as opt
from syncworker.deployrender.options import Credential, OptionError, RenderOptions, SecretRef
from syncworker.deployrender.runtime import PACKAGE, is_stock_image

# ConfigMaps hold at most 1 MiB, and base64 grows a file by a third.
MAX_WHEEL_BYTES = 700 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster-name", required=True, help="the cluster GitOps applies to")
    parser.add_argument("--config-file", required=True, help="the gitops-config.yaml to ship")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the YAML instead of applying it"
    )
    parser.add_argument("--kubeconfig", help="for applying (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context for applying")
    parser.add_argument("--namespace", default=opt.DEFAULT_NAMESPACE, help="default: %(default)s")

    image = parser.add_argument_group("image")
    image.add_argument(
        "--image",
        default=opt.DEFAULT_IMAGE,
        help="python:*-slim runs the stock-image mode; any other image is one built from "
        "deploy/Dockerfile (default: %(default)s)",
    )
    image.add_argument(
        "--runtime",
        choices=("auto", "stock", "image"),
        default="auto",
        help="override the mode --image implies (e.g. a mirror of python:3.11-slim)",
    )
    source = image.add_mutually_exclusive_group()
    source.add_argument("--source-url", help="stock image: a wheel or sdist URL to pip install")
    source.add_argument("--app-wheel", help="stock image: ship this wheel in ConfigMap gitops-app")
    image.add_argument("--pip-cache-claim", help="stock image: a PVC to keep pip's cache on")

    layout = parser.add_argument_group("layout")
    layout.add_argument("--fetch-workers", choices=("daemonset", "deployment"), default="daemonset")
    layout.add_argument(
        "--replicas", type=int, default=1, help="web (and fetch Deployment) replicas"
    )
    layout.add_argument("--download-base-url", help="default: http://gitops-web.NAMESPACE.svc")
    layout.add_argument("--allowed-hosts", default="", help="extra host names for the web server")
    layout.add_argument("--storage-class")
    layout.add_argument("--artifacts-claim", help="an existing PVC for release artifacts")
    layout.add_argument("--artifacts-size", default="1Gi")
    layout.add_argument("--postgres-size", default="5Gi")

    access = parser.add_argument_group("permissions of the apply worker")
    access.add_argument(
        "--scope",
        default="cluster",
        help="'cluster' (default) or 'namespaces=NS1,NS2' for Roles in those namespaces",
    )
    access.add_argument(
        "--resources",
        help="the kinds it may apply and prune, RESOURCE or GROUP/RESOURCE, comma-separated "
        "(default: " + ",".join(f"{g}/{r}" if g else r for g, r in opt.DEFAULT_RESOURCES) + ")",
    )
    access.add_argument("--add-resources", help="kinds added to the default list")

    secrets = parser.add_argument_group(
        "secrets (by default read from the Secret gitops-credentials, which you create)"
    )
    for stem, what in (
        ("secret-key", "Django's SECRET_KEY"),
        ("flower-auth", "Flower's basic auth, user:password"),
        ("postgres-password", "the bundled PostgreSQL's password"),
    ):
        group = secrets.add_mutually_exclusive_group()
        group.add_argument(f"--{stem}-file", help=f"a file holding {what} (rendered)")
        group.add_argument(f"--{stem}-secret", metavar="NAME:KEY", help="an existing Secret")
    for stem, what in (("database-url", "PostgreSQL"), ("redis-url", "Redis")):
        group = secrets.add_mutually_exclusive_group()
        group.add_argument(f"--{stem}", help=f"an external {what} (rendered into the Secret)")
        group.add_argument(f"--{stem}-secret", metavar="NAME:KEY", help="the same, from a Secret")


def _credential(key: str, args: argparse.Namespace, stem: str) -> Credential:
    path = getattr(args, f"{stem}_file")
    ref = getattr(args, f"{stem}_secret")
    if path is not None:
        return Credential(key, value=opt.read_secret_file(path, f"--{stem.replace('_', '-')}-file"))
    if ref is not None:
        return Credential(key, given_ref=SecretRef.parse(ref, f"--{stem.replace('_', '-')}-secret"))
    return Credential(key)


def _external(
    key: str, args: argparse.Namespace, stem: str, schemes: tuple[str, ...]
) -> Credential | None:
    value = getattr(args, stem)
    ref = getattr(args, f"{stem}_secret")
    option = f"--{stem.replace('_', '-')}"
    if value is not None:
        return Credential(key, value=opt.check_url_scheme(value, option, schemes))
    if ref is not None:
        return Credential(key, given_ref=SecretRef.parse(ref, f"{option}-secret"))
    return None


def _version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise OptionError(f"the {PACKAGE} package is not installed (run uv sync)") from None


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    version = _version()
    image = opt.check_image(args.image)
    stock = is_stock_image(image) if args.runtime == "auto" else args.runtime == "stock"
    if not stock:
        for name in ("source_url", "app_wheel", "pip_cache_claim"):
            if getattr(args, name):
                flag = "--" + name.replace("_", "-")
                raise OptionError(f"{flag}: only for the stock-image mode (python:*-slim)")
    if args.replicas < 1:
        raise OptionError("--replicas: must be at least 1")
    resources = opt.DEFAULT_RESOURCES
    if args.resources:
        resources = opt.parse_resources(args.resources, "--resources")
    if args.add_resources:
        resources += opt.parse_resources(args.add_resources, "--add-resources")
    database = _external("database-url", args, "database_url", ("postgres", "postgresql"))
    redis_url = _external("redis-url", args, "redis_url", ("redis", "rediss"))
    if database is not None and (args.postgres_password_file or args.postgres_password_secret):
        raise OptionError("--postgres-password-*: only for the bundled PostgreSQL")
    flower_auth = _credential("flower-basic-auth", args, "flower_auth")
    if flower_auth.value is not None and ":" not in flower_auth.value:
        raise OptionError("--flower-auth-file: expected user:password")
    for claim, option in ((args.artifacts_claim, "--artifacts-claim"),
                          (args.pip_cache_claim, "--pip-cache-claim")):  # fmt: skip
        if claim is not None:
            opt.check_dns_label(claim, option)
    return RenderOptions(
        cluster_name=_cluster_name(args.cluster_name),
        version=version,
        namespace=opt.check_dns_label(args.namespace, "--namespace"),
        image=image,
        stock_image=stock,
        source_url=opt.check_source_url(args.source_url) if args.source_url else None,
        app_wheel=_wheel(args.app_wheel, version) if args.app_wheel else None,
        pip_cache_claim=args.pip_cache_claim,
        fetch_workers=args.fetch_workers,
        replicas=args.replicas,
        download_base_url=(
            opt.check_download_base_url(args.download_base_url) if args.download_base_url else None
        ),
        allowed_hosts=opt.parse_hosts(args.allowed_hosts),
        scope_namespaces=opt.parse_scope(args.scope),
        rbac_resources=resources,
        secret_key=_credential("secret-key", args, "secret_key"),
        flower_auth=flower_auth,
        postgres_password=_credential("postgres-password", args, "postgres_password"),
        database_url=database,
        redis_url=redis_url,
        storage_class=args.storage_class,
        artifacts_claim=args.artifacts_claim,
        artifacts_size=opt.check_quantity(args.artifacts_size, "--artifacts-size"),
        postgres_size=opt.check_quantity(args.postgres_size, "--postgres-size"),
    )


def _cluster_name(value: str) -> str:
    try:
        return rules.key(value)
    except rules.RuleError as exc:
        raise OptionError(f"--cluster-name: {exc}") from None


def _wheel(path: str, version: str) -> tuple[str, bytes]:
    name = Path(path).name
    prefix = f"{PACKAGE.replace('-', '_')}-{version}-"
    if not (name.startswith(prefix) and name.endswith(".whl")):
        raise OptionError(f"--app-wheel: expected {prefix}*.whl, the version being rendered")
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise OptionError(f"--app-wheel: cannot read {path}: {exc.strerror or exc}") from None
    if len(content) > MAX_WHEEL_BYTES:
        raise OptionError("--app-wheel: too large for a ConfigMap; use --source-url")
    return name, content
