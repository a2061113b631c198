"""Redis and PostgreSQL for those who give none (``--redis-url``/``--database-url`` or
their ``-secret`` forms turn them off). Small and honest about it: Redis keeps the queue
in memory only, PostgreSQL is one pod on one volume. Production installations point at
managed or replicated services instead. Each is reachable only from our own pods.
"""

from __future__ import annotations

from syncworker.deployrender.objects import (
    APP_NAME,
    PART_OF,
    TMP_DIR,
    Obj,
    container_security,
    empty_dir,
    labels,
    metadata,
    pod_security,
    resources,
    selector_labels,
)
from syncworker.deployrender.options import RenderOptions
from syncworker.deployrender.pods import POSTGRES_DB, POSTGRES_USER, secret_env

REDIS_IMAGE = "redis:7.4"
POSTGRES_IMAGE = "postgres:17"
# The uid of the redis and postgres users in those (Debian-based) images.
IMAGE_UID = 999


def _only_from_our_pods(name: str, namespace: str, component: str, app: str, port: int) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, namespace, component, app=app),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(component, app)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {
                                    "app.kubernetes.io/name": APP_NAME,
                                    "app.kubernetes.io/part-of": PART_OF,
                                }
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }


def redis(options: RenderOptions) -> list[Obj]:
    ns = options.namespace
    container: Obj = {
        "name": "redis",
        "image": REDIS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        # No password: the NetworkPolicy admits our pods only. No persistence: beat
        # schedules every poll again, and queued deployments are rows in PostgreSQL.
        "args": ["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": ["redis-cli", "ping"]},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 20},
        "resources": resources("50m", "64Mi", "500m", "256Mi"),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("gitops-redis", ns, "broker", app="redis"),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels("broker", "redis")},
            "template": {
                "metadata": {"labels": labels("broker", "redis")},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(IMAGE_UID),
                    "containers": [container],
                    "volumes": [empty_dir("data", "256Mi")],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("gitops-redis", ns, "broker", app="redis"),
        "spec": {
            "selector": selector_labels("broker", "redis"),
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}],
        },
    }
    policy = _only_from_our_pods("gitops-redis", ns, "broker", "redis", 6379)
    return [deployment, service, policy]


def postgres(options: RenderOptions) -> list[Obj]:
    ns = options.namespace
    probe_command = ["pg_isready", "-h", "127.0.0.1", "-U", POSTGRES_USER, "-d", POSTGRES_DB]
    container: Obj = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "POSTGRES_USER", "value": POSTGRES_USER},
            {"name": "POSTGRES_DB", "value": POSTGRES_DB},
            secret_env("POSTGRES_PASSWORD", options.postgres_password),
            # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": probe_command},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "exec": {"command": probe_command},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
        },
        "resources": resources("100m", "256Mi", "1", "1Gi"),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }
    claim_spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": options.postgres_size}},
    }
    if options.storage_class:
        claim_spec["storageClassName"] = options.storage_class
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata("gitops-postgres", ns, "database", app="postgresql"),
        "spec": {
            "serviceName": "gitops-postgres",
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels("database", "postgresql")},
            "template": {
                "metadata": {"labels": labels("database", "postgresql")},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(IMAGE_UID),
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [empty_dir("run", "16Mi"), empty_dir("tmp", "256Mi")],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim_spec}],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("gitops-postgres", ns, "database", app="postgresql"),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels("database", "postgresql"),
            "ports": [
                {"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}
            ],
        },
    }
    policy = _only_from_our_pods("gitops-postgres", ns, "database", "postgresql", 5432)
    return [statefulset, service, policy]
