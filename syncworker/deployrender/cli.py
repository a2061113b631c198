"""``apply-gitops`` (and ``manage.py apply_gitops``): render the manifests that run Simple
GitOps, then print them (``--dry-run``) or apply them with the Kubernetes applyer.

Everything is rendered into one string before anything is written, so an error leaves
stdout empty and ``apply-gitops ... --dry-run | kubectl apply -f -`` cannot apply half a
release. Errors go to stderr and exit non-zero: 2 for a bad option, 1 for a bad config
file or a failed apply.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from syncworker.config import ConfigError
from syncworker.deployrender.options import OptionError, add_arguments, options_from_args
from syncworker.deployrender.render import render

__all__ = ["add_arguments", "build_parser", "main", "run"]

PROG = "apply-gitops"
Write = Callable[[str], object]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Render (and apply) the Kubernetes manifests that run Simple GitOps.",
    )
    add_arguments(parser)
    return parser


def _kubeconfig(given: str | None) -> str | None:
    """The kubeconfig to apply with; None means the in-cluster ServiceAccount."""
    if given:
        return given
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if from_env:
        return from_env
    default = Path.home() / ".kube" / "config"
    return str(default) if default.exists() else None


def run(args: argparse.Namespace, out: Write, err: Write) -> int:
    try:
        options = options_from_args(args)
    except OptionError as exc:
        err(f"{PROG}: error: {exc}\n")
        return 2
    try:
        rendered = render(Path(args.config_file), options)
    except ConfigError as exc:
        count = len(exc.errors)
        lines = "".join(f"  {error}\n" for error in exc.errors)
        plural = "s" if count > 1 else ""
        err(f"{PROG}: {args.config_file}: {count} error{plural}, nothing rendered\n{lines}")
        return 1
    for note in rendered.notes:
        err(f"{PROG}: note: {note}\n")
    if args.dry_run:
        out(rendered.text)
        return 0
    return _apply(rendered.text, _kubeconfig(args.kubeconfig), args.context, out, err)


def _apply(text: str, kubeconfig: str | None, context: str | None, out: Write, err: Write) -> int:
    # Imported here: rendering alone needs no Kubernetes client.
    from syncworker.applyers.base import TransientApplyError
    from syncworker.applyers.kubernetes import KubernetesApplyer

    applyer = KubernetesApplyer(kubeconfig=kubeconfig, context=context)
    try:
        ok, message = applyer.install()
        if not ok:
            err(f"{PROG}: cannot reach the cluster: {message}\n")
            return 1
        ok, output = applyer.apply(text)
    except TransientApplyError as exc:
        err(f"{PROG}: apply failed, try again: {exc}\n")
        return 1
    finally:
        applyer.close()
    if not ok:
        err(f"{PROG}: apply failed:\n{output}\n")
        return 1
    out(output + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _setup_django()
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    return run(args, sys.stdout.write, sys.stderr.write)


def _setup_django() -> None:
    """The config file is checked with the rules load_gitops_config applies in the
    cluster (syncworker.rules, the applyer registry), and those read the project's
    settings and models. Rendering reads no database and signs nothing, so a random
    SECRET_KEY stands in when none is given."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gitops_site.settings")
    if not (os.environ.get("SECRET_KEY") or os.environ.get("SECRET_KEY_FILE")):
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(40)
    import django

    django.setup()


if __name__ == "__main__":
    sys.exit(main())
