"""Cluster back ends. ``applyer_for(cluster)`` builds the applyer a Cluster row names.

A new applyer is one class and one entry in ``REGISTRY``: a builder that turns the
cluster's ``settings`` into constructor arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings

from syncworker import rules
from syncworker.applyers.base import Applyer
from syncworker.applyers.file import FileApplyer
from syncworker.applyers.kubectl import KubectlApplyer
from syncworker.applyers.nokube import DEFAULT_BIN_PATH, NokubeApplyer

if TYPE_CHECKING:
    from syncworker.models import Cluster

__all__ = ["REGISTRY", "Applyer", "ApplyerSettingsError", "applyer_for"]


class ApplyerSettingsError(ValueError):
    """A cluster's applyer or its settings cannot be used."""


class Settings:
    """Typed reads of a cluster's ``settings`` JSON; every problem names the cluster."""

    def __init__(self, cluster_name: str, applyer: str, values: Mapping[str, Any]) -> None:
        self.cluster_name = cluster_name
        self.applyer = applyer
        self.values = values
        self.read: set[str] = set()

    def error(self, message: str) -> ApplyerSettingsError:
        return ApplyerSettingsError(
            f"cluster {self.cluster_name!r} ({self.applyer} applyer): {message}"
        )

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        self.read.add(key)
        value = self.values.get(key)
        if value is None or value == "":
            if required:
                raise self.error(f"setting {key!r} is required")
            return default
        if not isinstance(value, str):
            raise self.error(f"setting {key!r} must be a string, not {type(value).__name__}")
        return value

    def path(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.string(key, default, required=required)
        return os.path.expanduser(value) if value else value

    def number(self, key: str, default: float, *, minimum: float) -> float:
        self.read.add(key)
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.error(f"setting {key!r} must be a number of at least {minimum}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        self.read.add(key)
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"setting {key!r} must be true or false")
        return value

    def check_unknown(self) -> None:
        """A misspelt key is an error rather than a silently ignored setting."""
        unknown = sorted(set(self.values) - self.read)
        if unknown:
            raise self.error(
                f"unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(self.read))}"
            )


def _kubernetes(s: Settings) -> Applyer:
    # The official client takes most of a second to import; only its users pay for it.
    from syncworker.applyers.kubernetes import KubernetesApplyer

    return KubernetesApplyer(
        kubeconfig=s.path("kubeconfig"),
        context=s.string("context"),
        namespace=s.string("namespace"),
        max_workers=int(s.number("max_workers", 8, minimum=1)),
        timeout=s.number("timeout", 30, minimum=1),
        crd_timeout=s.number("crd_timeout", 60, minimum=1),
        # How long each sync wave has to be healthy before the next one is applied.
        wave_timeout=s.number("wave_timeout", 300, minimum=1),
        # Off: every re-sync PATCHes every object, as if nothing had been applied before.
        verify_unchanged=s.boolean("verify_unchanged", True),
    )


def _kubectl(s: Settings) -> Applyer:
    return KubectlApplyer(
        kubeconfig=s.path("kubeconfig"),
        context=s.string("context"),
        kubectl=s.path("kubectl", "kubectl") or "kubectl",
        timeout=s.number("timeout", 300, minimum=1),
    )


def _nokube(s: Settings) -> Applyer:
    return NokubeApplyer(
        cluster_name=s.string("cluster_name", s.cluster_name) or s.cluster_name,
        nokube_download_url=s.string("nokube_download_url"),
        bin_path=s.path("bin_path", DEFAULT_BIN_PATH) or DEFAULT_BIN_PATH,
        timeout=s.number("timeout", 300, minimum=1),
    )


def _file(s: Settings) -> Applyer:
    default = str(django_settings.GITOPS["RENDER_DIR"])
    directory = s.path("directory", default) or default
    try:
        rules.local_directory(directory, root=django_settings.GITOPS["FILE_APPLYER_ROOT"])
    except rules.RuleError as exc:
        raise s.error(f"setting 'directory': {exc}") from None
    return FileApplyer(directory=directory)


#: Cluster.applyer value -> builder from the cluster's settings.
REGISTRY: dict[str, Callable[[Settings], Applyer]] = {
    "kubernetes": _kubernetes,
    "kubectl": _kubectl,
    "nokube": _nokube,
    "file": _file,
}


def applyer_for(cluster: Cluster) -> Applyer:
    """The applyer of ``cluster``, built from its settings (``install()`` not yet run)."""
    builder = REGISTRY.get(cluster.applyer)
    if builder is None:
        raise ApplyerSettingsError(
            f"cluster {cluster.name!r}: unknown applyer {cluster.applyer!r} "
            f"(known: {', '.join(REGISTRY)})"
        )
    values = cluster.settings or {}
    if not isinstance(values, Mapping):
        raise ApplyerSettingsError(f"cluster {cluster.name!r}: settings must be a JSON object")
    reader = Settings(cluster.name, cluster.applyer, values)
    applyer = builder(reader)
    reader.check_unknown()
    return applyer
