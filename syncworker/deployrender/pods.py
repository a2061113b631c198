"""How every pod of the application is put together: settings from the environment (see
gitops_site/settings.py), secrets as files (``*_FILE``), writable emptyDirs under a
read-only root, and the runtime of ``runtime``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from syncworker.deployrender.objects import (
    APP_UID,
    TMP_DIR,
    Obj,
    container_security,
    empty_dir,
    labels,
    pod_security,
)
from syncworker.deployrender.options import Credential, RenderOptions
from syncworker.deployrender.runtime import Runtime

CREDENTIALS_DIR = "/etc/gitops/credentials"
VAR_DIR = "/var/lib/gitops"
POSTGRES_USER = "gitops"
POSTGRES_DB = "gitops"
REDIS_URL = "redis://gitops-redis:6379/0"
DATABASE_URL = f"postgres://{POSTGRES_USER}@gitops-postgres:5432/{POSTGRES_DB}"


def secret_env(name: str, credential: Credential) -> Obj:
    ref = credential.ref
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


@dataclass(frozen=True)
class PodKit:
    options: RenderOptions
    runtime: Runtime

    def allowed_hosts(self) -> str:
        ns = self.options.namespace
        hosts = ["gitops-web", f"gitops-web.{ns}", f"gitops-web.{ns}.svc"]
        hosts += [f"gitops-web.{ns}.svc.cluster.local", "localhost"]
        base_host = urlsplit(self.options.effective_download_base_url).hostname
        hosts += [base_host] if base_host else []
        hosts += self.options.allowed_hosts
        return ",".join(dict.fromkeys(hosts))

    def _files(self, database: bool) -> list[tuple[str, Credential]]:
        """(file name, credential) of each secret read through ``NAME_FILE``."""
        files = [("secret-key", self.options.secret_key)]
        if database and self.options.database_url is not None:
            files.append(("database-url", self.options.database_url))
        if self.options.redis_url is not None:
            files.append(("redis-url", self.options.redis_url))
        return files

    def env(self, *, database: bool = True) -> list[Obj]:
        options = self.options
        env: list[Obj] = [
            {"name": "DJANGO_SETTINGS_MODULE", "value": "gitops_site.settings"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "HOME", "value": TMP_DIR},
            {"name": "GITOPS_VAR_DIR", "value": VAR_DIR},
            {"name": "SECRET_KEY_FILE", "value": f"{CREDENTIALS_DIR}/secret-key"},
        ]
        if database and options.database_url is not None:
            env.append({"name": "DATABASE_URL_FILE", "value": f"{CREDENTIALS_DIR}/database-url"})
        elif database:
            # libpq reads the password from PGPASSWORD: the URL itself holds no secret.
            env.append({"name": "DATABASE_URL", "value": DATABASE_URL})
            env.append(secret_env("PGPASSWORD", options.postgres_password))
        if options.redis_url is not None:
            env.append({"name": "CELERY_BROKER_URL_FILE", "value": f"{CREDENTIALS_DIR}/redis-url"})
        else:
            env.append({"name": "CELERY_BROKER_URL", "value": REDIS_URL})
        env.append({"name": "ALLOWED_HOSTS", "value": self.allowed_hosts()})
        env.append(
            {"name": "GITOPS_DOWNLOAD_BASE_URL", "value": options.effective_download_base_url}
        )
        return env + self.runtime.env

    def volumes(self, *, database: bool = True) -> list[Obj]:
        by_secret: dict[str, list[Obj]] = {}
        for path, credential in self._files(database):
            ref = credential.ref
            by_secret.setdefault(ref.name, []).append({"key": ref.key, "path": path})
        sources = [{"secret": {"name": name, "items": items}} for name, items in by_secret.items()]
        return [
            empty_dir("tmp", "256Mi"),
            empty_dir("var", "2Gi"),
            {"name": "credentials", "projected": {"defaultMode": 0o440, "sources": sources}},
            *self.runtime.volumes,
        ]

    def mounts(self) -> list[Obj]:
        return [
            {"name": "tmp", "mountPath": TMP_DIR},
            {"name": "var", "mountPath": VAR_DIR},
            {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True},
            *self.runtime.mounts,
        ]

    def container(
        self,
        name: str,
        args: list[str],
        resources: Obj,
        *,
        collectstatic: bool = False,
        database: bool = True,
        env: Sequence[Obj] = (),
        mounts: Sequence[Obj] = (),
        extra: Obj | None = None,
    ) -> Obj:
        return {
            "name": name,
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "command": self.runtime.command(args, collectstatic=collectstatic),
            "env": [*self.env(database=database), *env],
            **(extra or {}),
            "resources": resources,
            "securityContext": container_security(),
            "volumeMounts": [*self.mounts(), *mounts],
        }

    def template(
        self,
        component: str,
        containers: list[Obj],
        *,
        service_account: str,
        database: bool = True,
        volumes: Iterable[Obj] = (),
        spec: Obj | None = None,
    ) -> Obj:
        meta: Obj = {"labels": labels(component)}
        if self.runtime.fingerprint:
            meta["annotations"] = {"simple-gitops.io/runtime": self.runtime.fingerprint}
        return {
            "metadata": meta,
            "spec": {
                "serviceAccountName": service_account,
                **(spec or {}),
                "securityContext": pod_security(APP_UID),
                "containers": containers,
                "volumes": [*self.volumes(database=database), *volumes],
            },
        }
