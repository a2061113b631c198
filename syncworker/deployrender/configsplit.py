"""The config file as the cluster gets it: validated by the config schema, every secret
(tokens, webhook secrets, and ``webhook_url``, whose path holds Slack's credential) moved
out into the Secret and replaced by a ``*_file`` path where that Secret is mounted, and
the applyer pointed at the cluster being deployed to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syncworker.config import ConfigError, parse_config
from syncworker.config.schema import APPLYER_KEYS
from syncworker.deployrender.template import to_yaml

CONFIG_DIR = "/etc/gitops"
CONFIG_KEY = "gitops-config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"

# A secret's field, inline or *_file, -> its key in gitops-secrets (after the repository
# key's prefix for a repository's secrets).
_SECRET_FIELDS = {
    "token": "token",
    "token_file": "token",
    "webhook_secret": "webhook-secret",
    "webhook_secret_file": "webhook-secret",
    "webhook_url": "webhook-url",
    "webhook_url_file": "webhook-url",
}
_HEADER = (
    "# Rendered by apply-gitops. Tokens, webhook secrets and webhook_url are in the Secret\n"
    f"# gitops-secrets, mounted at {SECRETS_DIR}; edit the source file and render again.\n"
)


@dataclass(frozen=True)
class SplitConfig:
    text: str  # the ConfigMap's gitops-config.yaml: no secret in it
    secrets: dict[str, str] = field(repr=False)  # gitops-secrets key -> value
    notes: tuple[str, ...] = ()


def read_config(path: Path) -> str:
    """The file's text; one read, so that what is validated is what is rendered."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or type(exc).__name__}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"cannot read {path}: not UTF-8 text"]) from None


def split_config(path: Path, cluster_name: str) -> SplitConfig:
    """Raises ConfigError (with key paths) when the file does not validate."""
    text = read_config(path)
    config = parse_config(text, base_dir=path.resolve().parent)
    raw: dict[str, Any] = yaml.safe_load(text)  # valid, so a mapping without duplicate keys
    specs = {spec.key: spec for spec in config.repositories}
    secrets: dict[str, str] = {}
    out = _without_secrets("", raw, {"webhook-url": config.webhook_url}, secrets)
    if isinstance(out.get("github_configs"), dict):
        out["github_configs"] = {
            key: _without_secrets(
                f"{key}-",
                entry,
                {"token": specs[key].token, "webhook-secret": specs[key].webhook_secret},
                secrets,
            )
            for key, entry in out["github_configs"].items()
        }
    notes = _point_applyer(out, cluster_name)
    return SplitConfig(text=_HEADER + to_yaml(out), secrets=secrets, notes=tuple(notes))


def _without_secrets(
    prefix: str, entry: dict[str, Any], given: dict[str, str | None], secrets: dict[str, str]
) -> dict[str, Any]:
    """The mapping with each secret (inline or from a local file; ``given`` holds its
    value) replaced, in place, by a ``*_file`` path into the mounted Secret.
    ``token: ""`` (clear it) stays as it is."""
    result: dict[str, Any] = {}
    for name, value in entry.items():
        kind = _SECRET_FIELDS.get(name)
        if kind is None:
            result[name] = value
            continue
        secret = given[kind]
        if secret:
            secrets[prefix + kind] = secret
            result[kind.replace("-", "_") + "_file"] = f"{SECRETS_DIR}/{prefix}{kind}"
        elif not name.endswith("_file") and value is not None:
            result[name] = value
    return result


def _point_applyer(config: dict[str, Any], cluster_name: str) -> list[str]:
    """No applyer in the file: apply to this cluster through the apply worker's
    ServiceAccount. An applyer without a cluster_name gets the one given."""
    present = [key for key in APPLYER_KEYS if key in config]
    if not present:
        config["applyer_kubernetes"] = {"cluster_name": cluster_name}
        return []
    key = present[0]
    settings = dict(config.get(key) or {})
    notes = []
    if "cluster_name" not in settings:
        settings = {"cluster_name": cluster_name, **settings}
    elif settings["cluster_name"] != cluster_name:
        notes.append(
            f"{key}.cluster_name is {settings['cluster_name']!r}, not the --cluster-name "
            f"{cluster_name!r}; the file's value is kept"
        )
    if key in {"applyer_kubernetes", "applyer_kubectl"} and settings.get("kubeconfig"):
        notes.append(
            f"{key}.kubeconfig is read inside the apply worker's pod; leave it out to use "
            "the worker's ServiceAccount"
        )
    config[key] = settings
    return notes
