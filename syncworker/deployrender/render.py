"""Everything ``apply-gitops`` prints, as one string, in a fixed order: the files of
``manifests/`` (the shapes) filled in with the values computed here (template.py says
how).

Only values given (the config file's secrets, ``--*-file`` options, external URLs) are
rendered into the Secret ``gitops-secrets``; nothing is generated. What the pods need and
was not given is read from the Secret ``gitops-credentials``, which the user creates once:
the header says how (and ``notes`` repeats it for stderr).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncworker.deployrender import rbac, template
from syncworker.deployrender.configsplit import CONFIG_PATH, SECRETS_DIR, SplitConfig, split_config
from syncworker.deployrender.options import (
    CREDENTIALS_NAME,
    PACKAGE,
    Credential,
    RenderOptions,
    SecretRef,
)
from syncworker.deployrender.template import Obj

MANAGEMENT_LABEL = "node-role.nokube.io/management"
ARTIFACTS_CLAIM = "gitops-artifacts"
_GENERATE = {
    "secret-key": '"$(openssl rand -hex 32)"',
    "flower-basic-auth": '"admin:$(openssl rand -hex 16)"',
    "postgres-password": '"$(openssl rand -hex 24)"',
}


@dataclass(frozen=True)
class Rendered:
    text: str
    notes: tuple[str, ...]  # for the person running the command: never a secret


def render(config_path: Path, options: RenderOptions) -> Rendered:
    """Raises syncworker.config.ConfigError when the config file does not validate."""
    split = split_config(config_path, options.cluster_name)
    secret_data = dict(split.secrets)
    for credential in _credentials(options):
        if credential.value is not None:
            secret_data[credential.key] = credential.value
    values = _values(options, split, secret_data)
    fill = template.render

    documents = fill("namespace.yaml", values, name=options.namespace, restricted=True)
    for name in options.scope_namespaces:
        documents += fill("namespace.yaml", values, name=name, restricted=False)
    documents += fill("service-accounts.yaml", values)
    resources = options.rbac_resources
    if not options.scope_namespaces:
        # One per installation: two releases in two namespaces must not share it.
        role = {"role_kind": "ClusterRole", "role_name": f"simple-gitops:{options.namespace}:apply"}
        rules = rbac.rules(resources, namespaced_only=False)
        documents += fill("apply-role.yaml", values, **role, role_namespace=None, rules=rules)
    role = {"role_kind": "Role", "role_name": "simple-gitops-apply"}
    rules = rbac.rules(resources, namespaced_only=True)
    for target in options.scope_namespaces:
        documents += fill("apply-role.yaml", values, **role, role_namespace=target, rules=rules)
    for name in ("config.yaml", "runtime.yaml", "redis.yaml", "postgres.yaml"):
        documents += fill(name, values)
    (job,) = fill("migrate-job.yaml", values)
    # The Job reruns when anything it runs with or loads changes, secrets included (as
    # Helm's checksum annotations do: 40 bits of SHA-256 say nothing of a strong secret).
    job["metadata"]["name"] += "-" + _digest(
        job, split.text, sorted(secret_data.items()), length=10
    )
    documents.append(job)
    documents += fill("web.yaml", values) + fill("workers.yaml", values)
    documents += fill("flower.yaml", values, **_pod(options, values, database=False))

    notes = [*split.notes, *_instructions(options)]
    header = [
        f"Simple GitOps {options.version} for cluster {options.cluster_name!r}, "
        f"namespace {options.namespace!r}, rendered by apply-gitops.",
        "Apply: apply-gitops ... --dry-run | kubectl apply -f -  (or without --dry-run)",
    ]
    for note in notes:
        first, *rest = note.splitlines()
        header.append(f"NOTE: {first}")
        header += [f"  {line}" for line in rest]
    return Rendered(template.dump_documents(header, documents), tuple(notes))


def _values(options: RenderOptions, split: SplitConfig, secrets: dict[str, str]) -> dict[str, Any]:
    """What the manifests' ``${...}`` and ``!if:...`` stand for."""
    requirements = template.read_text("requirements.txt")
    start_sh = template.read_text("start.sh")
    app_wheel = None
    if options.app_wheel is not None:
        name, content = options.app_wheel
        app_wheel = {name: base64.b64encode(content).decode()}
    app_digest = _digest(*app_wheel.values()) if app_wheel else ""
    values: dict[str, Any] = {
        "namespace": options.namespace,
        "image": options.image,
        "version": options.version,
        "replicas": options.replicas,
        "stock": options.stock_image,
        # A pod-template annotation, so that pods restart when what they install changes.
        "fingerprint": _digest(
            requirements, start_sh, options.source_url, app_digest, options.version
        ),
        "requirements": requirements,
        "start_sh": start_sh,
        "app_wheel": app_wheel,
        "source_url": options.source_url,
        "pip_cache_claim": options.pip_cache_claim,
        "daemonset": options.fetch_workers == "daemonset",
        "fetch_kind": "DaemonSet" if options.fetch_workers == "daemonset" else "Deployment",
        "bundled_postgres": options.database_url is None,
        "bundled_redis": options.redis_url is None,
        "postgres_password": _ref(options.postgres_password.ref),
        "flower_auth": _ref(options.flower_auth.ref),
        "storage_class": options.storage_class,
        "postgres_size": options.postgres_size,
        "artifacts_size": options.artifacts_size,
        "artifacts_pvc": options.artifacts_claim is None,
        "artifacts_claim": options.artifacts_claim or ARTIFACTS_CLAIM,
        "allowed_hosts": _allowed_hosts(options),
        "download_base_url": options.effective_download_base_url,
        "secret_data": {k: base64.b64encode(secrets[k].encode()).decode() for k in sorted(secrets)},
        "config": split.text,
        "config_path": CONFIG_PATH,
        "secrets_dir": SECRETS_DIR,
        "config_secrets": [{"key": key, "path": key} for key in sorted(split.secrets)],
    }
    return {**values, **_pod(options, values, database=True)}


def _pod(options: RenderOptions, values: dict[str, Any], *, database: bool) -> dict[str, Any]:
    """manifests/pod.yaml filled in: what every pod of ours has."""
    files = [("secret-key", options.secret_key)]  # read by the settings as NAME_FILE
    if database and options.database_url is not None:
        files.append(("database-url", options.database_url))
    if options.redis_url is not None:
        files.append(("redis-url", options.redis_url))
    by_secret: dict[str, list[Obj]] = {}
    for path, credential in files:
        by_secret.setdefault(credential.ref.name, []).append(
            {"key": credential.ref.key, "path": path}
        )
    sources = [{"secret": {"name": name, "items": items}} for name, items in by_secret.items()]
    (parts,) = template.render("pod.yaml", values, database=database, credential_sources=sources)
    return parts


def _allowed_hosts(options: RenderOptions) -> str:
    web = f"gitops-web.{options.namespace}"
    hosts = ["gitops-web", web, f"{web}.svc", f"{web}.svc.cluster.local", "localhost"]
    base_host = urlsplit(options.effective_download_base_url).hostname
    hosts += [base_host] if base_host else []
    hosts += options.allowed_hosts
    return ",".join(dict.fromkeys(hosts))


def _ref(ref: SecretRef) -> dict[str, str]:
    return {"name": ref.name, "key": ref.key}


def _digest(*parts: Any, length: int = 12) -> str:
    """A short, stable fingerprint of JSON-able values (for names and pod annotations)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _credentials(options: RenderOptions) -> list[Credential]:
    """The secret values the pods read, in a fixed order."""
    found = [options.secret_key, options.flower_auth]
    found.append(
        options.postgres_password if options.database_url is None else options.database_url
    )
    if options.redis_url is not None:
        found.append(options.redis_url)
    return found


def _instructions(options: RenderOptions) -> list[str]:
    """What must exist besides what is rendered, and how to make it."""
    notes: list[str] = []
    ns = options.namespace
    missing = [c.key for c in _credentials(options) if c.expected_from_user]
    if missing:
        lines = [
            f"The pods read {', '.join(missing)} from the Secret {CREDENTIALS_NAME}, which is "
            "not rendered (no value was given). Create it once:",
            f"kubectl -n {ns} create secret generic {CREDENTIALS_NAME} \\",
        ]
        lines += [f"  --from-literal={key}={_GENERATE[key]} \\" for key in missing]
        lines[-1] = lines[-1].removesuffix(" \\")
        notes.append("\n".join(lines))
    for credential in _credentials(options):
        ref = credential.given_ref
        if ref is not None:
            notes.append(f"The Secret {ref.name} in namespace {ns} must have the key {ref.key}.")
    if options.fetch_workers == "daemonset":
        notes.append(
            f"The fetch workers run only on nodes labelled {MANAGEMENT_LABEL}=true: "
            f"kubectl label node NODE {MANAGEMENT_LABEL}=true"
        )
    if options.replicas > 1 and options.artifacts_claim is None:
        notes.append(
            f"The ReadWriteOnce claim {ARTIFACTS_CLAIM} keeps all {options.replicas} web pods "
            "on one node; give --artifacts-claim a ReadWriteMany claim to spread them."
        )
    if options.stock_image and not options.source_url and options.app_wheel is None:
        notes.append(
            f"The pods install {PACKAGE}=={options.version} from the ConfigMap gitops-app "
            "(not rendered: give --app-wheel or --source-url to change that). Create it once:\n"
            f"uv build --wheel -o dist && kubectl -n {ns} create configmap gitops-app "
            f"--from-file=dist/{PACKAGE.replace('-', '_')}-{options.version}-py3-none-any.whl"
        )
    return notes
