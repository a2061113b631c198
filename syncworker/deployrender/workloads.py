"""The processes of scripts/run as Kubernetes workloads: the web server, the fetch/poll
workers, the serial apply worker, beat, Flower, and the Job that migrates the database
and loads the config file.

Beat and the apply worker are singletons by deployment (replicas 1, ``Recreate``, so an
old pod is gone before a new one starts); the apply queue also has a Redis lock per
cluster, so even an overlap could not break the order of applies.
"""

from __future__ import annotations

from syncworker.deployrender.configsplit import CONFIG_KEY, CONFIG_PATH, SECRETS_DIR
from syncworker.deployrender.objects import TMP_DIR, Obj, metadata, resources, selector_labels
from syncworker.deployrender.pods import PodKit, secret_env
from syncworker.deployrender.rbac import APP_SERVICE_ACCOUNT, APPLY_SERVICE_ACCOUNT

WEB_PORT = 8000
FLOWER_PORT = 5555
MANAGEMENT_LABEL = "node-role.nokube.io/management"
ARTIFACTS_DIR = "/srv/gitops/artifacts"
ARTIFACTS_CLAIM = "gitops-artifacts"
CONFIG_MAP = "gitops-config"
CELERY = ["celery", "-A", "gitops_site"]


def _http_probe(path: str, port: str, period: int, failures: int, *, django: bool) -> Obj:
    get: Obj = {"path": path, "port": port}
    if django:
        # Django answers only to ALLOWED_HOSTS; the kubelet would send the pod IP.
        get["httpHeaders"] = [{"name": "Host", "value": "localhost"}]
    return {
        "httpGet": get,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _deployment(
    name: str, namespace: str, component: str, template: Obj, *, replicas: int, recreate: bool
) -> Obj:
    spec: Obj = {"replicas": replicas, "revisionHistoryLimit": 3}
    if recreate:
        spec["strategy"] = {"type": "Recreate"}
    spec["selector"] = {"matchLabels": selector_labels(component)}
    spec["template"] = template
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace, component),
        "spec": spec,
    }


def _service(name: str, namespace: str, component: str, port: int, target: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, component),
        "spec": {
            "selector": selector_labels(component),
            "ports": [{"name": target, "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def migrate_job(kit: PodKit, name: str, secret_keys: list[str]) -> Obj:
    """``migrate`` then ``load_gitops_config``. Named after a digest of what it loads, so
    a changed config (or token) is a new Job: a Job's pod template cannot be updated."""
    mounts = [{"name": "config", "mountPath": CONFIG_PATH, "subPath": CONFIG_KEY, "readOnly": True}]
    volumes = [{"name": "config", "configMap": {"name": CONFIG_MAP}}]
    if secret_keys:
        mounts.append({"name": "config-secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "config-secrets",
                "secret": {
                    "secretName": "gitops-secrets",
                    "defaultMode": 0o440,
                    "items": [{"key": key, "path": key} for key in secret_keys],
                },
            }
        )
    script = f"django-admin migrate --noinput && exec django-admin load_gitops_config {CONFIG_PATH}"
    container = kit.container(
        "migrate",
        ["/bin/sh", "-c", script],
        resources("100m", "256Mi", "1", "512Mi"),
        env=[{"name": "GITOPS_CONFIG_FILE", "value": CONFIG_PATH}],
        mounts=mounts,
    )
    template = kit.template(
        "migrate",
        [container],
        service_account=APP_SERVICE_ACCOUNT,
        volumes=volumes,
        spec={"restartPolicy": "OnFailure"},
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, kit.options.namespace, "migrate"),
        "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 86400, "template": template},
    }


def web(kit: PodKit) -> list[Obj]:
    options = kit.options
    ns = options.namespace
    objects: list[Obj] = []
    claim = options.artifacts_claim
    if claim is None:
        claim = ARTIFACTS_CLAIM
        pvc_spec: Obj = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": options.artifacts_size}},
        }
        if options.storage_class:
            pvc_spec["storageClassName"] = options.storage_class
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata(ARTIFACTS_CLAIM, ns, "web"),
                "spec": pvc_spec,
            }
        )
    container = kit.container(
        "web",
        ["gunicorn", "gitops_site.wsgi", "--bind", f"0.0.0.0:{WEB_PORT}", "--workers", "2",
         "--access-logfile", "-", "--worker-tmp-dir", TMP_DIR],
        resources("100m", "256Mi", "1", "768Mi"),
        collectstatic=True,
        env=[{"name": "GITOPS_ARTIFACTS_ROOT", "value": ARTIFACTS_DIR}],
        mounts=[{"name": "artifacts", "mountPath": ARTIFACTS_DIR}],
        extra={
            "ports": [{"name": "http", "containerPort": WEB_PORT, "protocol": "TCP"}],
            # The stock image installs its runtime first: allow it up to 15 minutes.
            "startupProbe": _http_probe("/healthz", "http", 10, 90, django=True),
            "livenessProbe": _http_probe("/healthz", "http", 20, 3, django=True),
            "readinessProbe": _http_probe("/readyz", "http", 10, 3, django=True),
        },
    )  # fmt: skip
    template = kit.template(
        "web",
        [container],
        service_account=APP_SERVICE_ACCOUNT,
        volumes=[{"name": "artifacts", "persistentVolumeClaim": {"claimName": claim}}],
    )
    # A ReadWriteOnce volume cannot follow a surge pod to another node.
    recreate = options.artifacts_claim is None
    objects.append(
        _deployment("gitops-web", ns, "web", template, replicas=options.replicas, recreate=recreate)
    )
    objects.append(_service("gitops-web", ns, "web", 80, "http"))
    return objects


def fetch_workers(kit: PodKit) -> Obj:
    """Poll and fetch queues (and the default one): a DaemonSet on the management nodes,
    as the seed runs its controller, or a Deployment."""
    options = kit.options
    container = kit.container(
        "worker",
        [*CELERY, "worker", "-n", "fetch@%h", "-Q", "default,poll,fetch", "-c", "2", "-l", "INFO"],
        resources("100m", "256Mi", "1", "1Gi"),
    )
    spec: Obj = {"terminationGracePeriodSeconds": 60}
    if options.fetch_workers == "daemonset":
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": MANAGEMENT_LABEL, "operator": "In", "values": ["true"]}
                            ]
                        }
                    ]
                }
            }
        }
        # Management nodes are often control-plane nodes, tainted against ordinary pods.
        spec["tolerations"] = [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
             "effect": "NoSchedule"},
            {"key": MANAGEMENT_LABEL, "operator": "Exists", "effect": "NoSchedule"},
        ]  # fmt: skip
    template = kit.template(
        "fetch-worker", [container], service_account=APP_SERVICE_ACCOUNT, spec=spec
    )
    if options.fetch_workers == "deployment":
        return _deployment(
            "gitops-fetch-worker", options.namespace, "fetch-worker", template,
            replicas=options.replicas, recreate=False,
        )  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata("gitops-fetch-worker", options.namespace, "fetch-worker"),
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels("fetch-worker")},
            "template": template,
        },
    }


def apply_worker(kit: PodKit) -> Obj:
    """The only pod with a Kubernetes token; one process consuming the apply queue."""
    container = kit.container(
        "worker",
        [*CELERY, "worker", "-n", "apply@%h", "-Q", "apply", "-c", "1", "-l", "INFO"],
        resources("100m", "256Mi", "1", "1Gi"),
        # The nokube applyer keeps its binary there (syncworker/applyers/nokube.py).
        mounts=[{"name": "pod-workspace", "mountPath": "/pod-workspace"}],
    )
    template = kit.template(
        "apply-worker",
        [container],
        service_account=APPLY_SERVICE_ACCOUNT,
        volumes=[{"name": "pod-workspace", "emptyDir": {"sizeLimit": "512Mi"}}],
        # Let a running apply finish before the pod goes.
        spec={"terminationGracePeriodSeconds": 300},
    )
    return _deployment(
        "gitops-apply-worker", kit.options.namespace, "apply-worker", template,
        replicas=1, recreate=True,
    )  # fmt: skip


def beat(kit: PodKit) -> Obj:
    container = kit.container(
        "beat",
        [*CELERY, "beat", "-l", "INFO", "-s", "/var/lib/gitops/celerybeat-schedule"],
        resources("50m", "192Mi", "500m", "512Mi"),
    )
    template = kit.template("beat", [container], service_account=APP_SERVICE_ACCOUNT)
    return _deployment(
        "gitops-beat", kit.options.namespace, "beat", template, replicas=1, recreate=True
    )


def flower(kit: PodKit) -> list[Obj]:
    """Flower needs the broker only: no database credentials in its pod."""
    options = kit.options
    container = kit.container(
        "flower",
        [*CELERY, "flower", "--address=0.0.0.0", f"--port={FLOWER_PORT}"],
        resources("50m", "192Mi", "500m", "512Mi"),
        database=False,
        env=[secret_env("FLOWER_BASIC_AUTH", options.flower_auth)],
        extra={
            "ports": [{"name": "flower", "containerPort": FLOWER_PORT, "protocol": "TCP"}],
            # /healthcheck is the one page Flower serves without authentication.
            "startupProbe": _http_probe("/healthcheck", "flower", 10, 90, django=False),
            "livenessProbe": _http_probe("/healthcheck", "flower", 20, 3, django=False),
        },
    )
    template = kit.template(
        "flower", [container], service_account=APP_SERVICE_ACCOUNT, database=False
    )
    return [
        _deployment(
            "gitops-flower", options.namespace, "flower", template, replicas=1, recreate=True
        ),
        _service("gitops-flower", options.namespace, "flower", FLOWER_PORT, "flower"),
    ]
