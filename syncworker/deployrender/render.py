"""Everything ``apply-gitops`` prints, as one string, in a fixed order.

Only values given (the config file's tokens, ``--*-file`` options) are rendered into the
Secret ``gitops-secrets``; nothing is generated. What the pods need and was not given is
read from the Secret ``gitops-credentials``, which the user creates once: the header says
how (and ``notes`` repeats it for stderr).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from syncworker.deployrender import backing, rbac, workloads
from syncworker.deployrender.configsplit import CONFIG_KEY, split_config
from syncworker.deployrender.objects import Obj, digest, dump_documents, metadata
from syncworker.deployrender.options import (
    CREDENTIALS_NAME,
    SECRETS_NAME,
    Credential,
    RenderOptions,
)
from syncworker.deployrender.pods import PodKit
from syncworker.deployrender.runtime import APP_CONFIGMAP, PACKAGE, build_runtime


@dataclass(frozen=True)
class Rendered:
    text: str
    notes: tuple[str, ...]  # for the person running the command: never a secret


def render(config_path: Path, options: RenderOptions) -> Rendered:
    """Raises syncworker.config.ConfigError when the config file does not validate."""
    split = split_config(config_path, options.cluster_name)
    runtime = build_runtime(options)
    kit = PodKit(options, runtime)
    ns = options.namespace

    secret_data = dict(split.secrets)
    for credential in _credentials(options):
        if credential.value is not None:
            secret_data[credential.key] = credential.value
    documents: list[Obj] = [_namespace(ns, restricted=True)]
    documents += [_namespace(name, restricted=False) for name in options.scope_namespaces]
    documents += rbac.service_accounts(options)
    documents += rbac.apply_permissions(options)
    if secret_data:
        documents.append(_secret(ns, secret_data))
    documents.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(workloads.CONFIG_MAP, ns, "config"),
            "data": {CONFIG_KEY: split.text},
        }
    )
    documents += runtime.objects
    if options.redis_url is None:
        documents += backing.redis(options)
    if options.database_url is None:
        documents += backing.postgres(options)
    job = workloads.migrate_job(kit, "gitops-migrate", sorted(split.secrets))
    # The Job reruns when anything it runs with or loads changes, secrets included (as
    # Helm's checksum annotations do: 40 bits of SHA-256 say nothing of a strong secret).
    job_digest = digest(job, split.text, sorted(secret_data.items()), length=10)
    job["metadata"]["name"] = f"gitops-migrate-{job_digest}"
    documents.append(job)
    documents += workloads.web(kit)
    documents.append(workloads.fetch_workers(kit))
    documents.append(workloads.apply_worker(kit))
    documents.append(workloads.beat(kit))
    documents += workloads.flower(kit)

    notes = [*split.notes, *_instructions(options)]
    header = [
        f"Simple GitOps {options.version} for cluster {options.cluster_name!r}, "
        f"namespace {ns!r}, rendered by apply-gitops.",
        "Apply: apply-gitops ... --dry-run | kubectl apply -f -  (or without --dry-run)",
    ]
    for note in notes:
        first, *rest = note.splitlines()
        header.append(f"NOTE: {first}")
        header += [f"  {line}" for line in rest]
    return Rendered(dump_documents(header, documents), tuple(notes))


def _credentials(options: RenderOptions) -> list[Credential]:
    """The secret values the pods read, in a fixed order."""
    found = [options.secret_key, options.flower_auth]
    if options.database_url is None:
        found.append(options.postgres_password)
    else:
        found.append(options.database_url)
    if options.redis_url is not None:
        found.append(options.redis_url)
    return found


def _namespace(name: str, *, restricted: bool) -> Obj:
    if not restricted:
        # Someone else's namespace, maybe: only make sure it exists.
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    meta = metadata(name, None, "namespace")
    # Every pod of ours meets the restricted Pod Security Standard; keep it that way.
    meta["labels"].update(
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }
    )
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _secret(namespace: str, data: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(SECRETS_NAME, namespace, "config"),
        "type": "Opaque",
        # data, not stringData: server-side apply of stringData is never a no-op.
        "data": {key: base64.b64encode(data[key].encode()).decode() for key in sorted(data)},
    }


_GENERATE = {
    "secret-key": '"$(openssl rand -hex 32)"',
    "flower-basic-auth": '"admin:$(openssl rand -hex 16)"',
    "postgres-password": '"$(openssl rand -hex 24)"',
}


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
            f"The fetch workers run only on nodes labelled {workloads.MANAGEMENT_LABEL}=true: "
            f"kubectl label node NODE {workloads.MANAGEMENT_LABEL}=true"
        )
    if options.replicas > 1 and options.artifacts_claim is None:
        notes.append(
            f"The ReadWriteOnce claim {workloads.ARTIFACTS_CLAIM} keeps all "
            f"{options.replicas} web pods on one node; give --artifacts-claim a "
            "ReadWriteMany claim to spread them."
        )
    if options.stock_image and not options.source_url and options.app_wheel is None:
        notes.append(
            f"The pods install {PACKAGE}=={options.version} from the ConfigMap {APP_CONFIGMAP} "
            "(not rendered: give --app-wheel or --source-url to change that). Create it once:\n"
            f"uv build --wheel -o dist && kubectl -n {ns} create configmap {APP_CONFIGMAP} "
            f"--from-file=dist/{PACKAGE.replace('-', '_')}-{options.version}-py3-none-any.whl"
        )
    return notes
