"""What GitOps knows: repositories it watches, services rendered from them, clusters it
applies to, and the history of every deployment.

Credentials (tokens, webhook secrets) live in plain columns of Repository; they are
write-only in the admin and the API and never part of ``__str__`` or ``repr``.

A row the config file loaded has ``managed_by_config``; its ``config_fields`` are the
fields the file set at the last load (``syncworker.config.importer``), which the API and
the admin refuse to change (``syncworker.guards``): the next load would put them back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.deconstruct import deconstructible

from syncworker import rules

# Seconds: a failing repository is still polled at least once an hour.
MAX_POLL_BACKOFF = 3600


@deconstructible
class Rule:
    """A model-field validator that applies one function of ``syncworker.rules`` (named,
    so migrations can refer to it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, value: Any) -> None:
        check: Callable[[Any], object] = getattr(rules, self.name)
        try:
            check(value)
        except rules.RuleError as exc:
            raise ValidationError(str(exc)) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


class Cluster(models.Model):
    class Applyer(models.TextChoices):
        KUBERNETES = "kubernetes", "Kubernetes API (server-side apply)"
        KUBECTL = "kubectl", "kubectl apply --server-side"
        NOKUBE = "nokube", "nokube CLI"
        FILE = "file", "Write rendered YAML to a directory"

    name = models.CharField(max_length=100, unique=True, validators=[Rule("key")])
    applyer = models.CharField(max_length=20, choices=Applyer.choices, default=Applyer.FILE)
    # Applyer settings: kubeconfig/context, directory, nokube_download_url, ...
    settings = models.JSONField(default=dict, blank=True)
    is_default = models.BooleanField(
        default=False, help_text="Services without an explicit cluster deploy here."
    )
    managed_by_config = models.BooleanField(default=False, editable=False)
    config_fields = models.JSONField(default=list, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_cluster",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.applyer})"

    def clean(self) -> None:
        # The applyer registry is the one reader of the settings: what it cannot build
        # from them (a string instead of a mapping, an unknown key, a directory outside
        # GITOPS_FILE_APPLYER_ROOT) is refused here, not at the first deployment.
        from syncworker.applyers import ApplyerSettingsError, applyer_for

        try:
            rules.storable_json(self.settings)
            applyer_for(self)
        except (rules.RuleError, ApplyerSettingsError) as exc:
            raise ValidationError({"settings": str(exc)}) from None


class Repository(models.Model):
    class Provider(models.TextChoices):
        GITHUB = "github", "GitHub REST API"
        GIT = "git", "Git (smart HTTP or file)"

    key = models.CharField(
        max_length=100,
        unique=True,
        validators=[Rule("key")],
        help_text="The github_configs key.",
    )
    provider = models.CharField(max_length=10, choices=Provider.choices)
    owner = models.CharField(max_length=100, blank=True, validators=[Rule("github_name")])
    name = models.CharField(max_length=100, blank=True, validators=[Rule("github_name")])
    url = models.CharField(
        max_length=500,
        validators=[Rule("configured_repo_url")],
        help_text="Clone URL or web URL of the repository.",
    )
    api_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[Rule("web_url")],
        help_text="GitHub API root (GitHub Enterprise).",
    )
    branch = models.CharField(max_length=255, default="main", validators=[Rule("branch")])
    token = models.CharField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=500, blank=True)
    poll_interval = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(2**31 - 1)]
    )
    # Where this repository's bundles may reach; null: anywhere, []: nowhere.
    allowed_namespaces = models.JSONField(
        null=True,
        blank=True,
        default=None,
        validators=[Rule("name_patterns")],
        help_text='Namespaces its services may deploy to (patterns such as "shop-*"); '
        "null: unrestricted; []: none.",
    )
    allowed_cluster_resources = models.JSONField(
        null=True,
        blank=True,
        default=None,
        validators=[Rule("kind_list")],
        help_text='Cluster-scoped kinds its services may create ("ClusterRole", '
        '"rbac.authorization.k8s.io/ClusterRole", "*"); null: unrestricted; []: none.',
    )
    enabled = models.BooleanField(default=True)
    managed_by_config = models.BooleanField(default=False, editable=False)
    config_fields = models.JSONField(default=list, blank=True, editable=False)

    last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_commit = models.CharField(max_length=64, blank=True, editable=False)
    etag = models.CharField(max_length=200, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    next_poll_after = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return self.full_name or self.key

    def clean(self) -> None:
        if self.provider == self.Provider.GITHUB and not (self.owner and self.name):
            raise ValidationError({"owner": "a GitHub repository needs owner and name"})

    @property
    def full_name(self) -> str:
        """``owner/name`` as the status API shows it, else the key."""
        return f"{self.owner}/{self.name}" if self.owner and self.name else self.key

    def backoff(self) -> timedelta:
        """Delay before the next poll after consecutive failures: the poll interval,
        doubled with each failure, capped at an hour."""
        if not self.consecutive_failures:
            return timedelta(0)
        # 2**12 times even a 1 s interval is past the cap: no need for bigger numbers.
        factor = 2 ** min(self.consecutive_failures - 1, 12)
        return timedelta(seconds=min(self.poll_interval * factor, MAX_POLL_BACKOFF))


class Service(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[Rule("service_name")])
    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="services")
    k8s_yaml_dir = models.CharField(
        max_length=500,
        validators=[Rule("service_dir")],
        help_text="Directory in the repository ('.' is the root).",
    )
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, null=True, blank=True, related_name="services"
    )
    namespace = models.CharField(
        max_length=63,
        blank=True,
        validators=[Rule("namespace")],
        help_text="Namespace for objects that do not name one.",
    )
    prune = models.BooleanField(
        default=True, help_text="Delete objects of ours that left Git (by inventory)."
    )
    stateless = models.BooleanField(
        default=False, help_text="Apply the seed's stateless pattern (download init + app)."
    )
    create_namespace = models.BooleanField(
        default=True,
        help_text="Create the namespace when it does not exist (never pruned); "
        "only with a namespace.",
    )
    # Which files of a plain directory are read (kustomize reads what its file names).
    recurse = models.BooleanField(
        default=True, help_text="Read subdirectories too (off: the directory's own files only)."
    )
    include = models.JSONField(
        default=list,
        blank=True,
        validators=[Rule("include_patterns")],
        help_text="Only the files these gitignore-style patterns match (relative to "
        "the directory); empty: all.",
    )
    exclude = models.JSONField(
        default=list,
        blank=True,
        validators=[Rule("exclude_patterns")],
        help_text="Leave out the files these gitignore-style patterns match.",
    )
    enabled = models.BooleanField(default=True)
    wait = models.BooleanField(
        default=True, help_text="A deployment succeeds only once every object is healthy."
    )
    health_timeout = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(1)],
        help_text="Seconds the objects have to become healthy after the apply.",
    )
    managed_by_config = models.BooleanField(default=False, editable=False)
    config_fields = models.JSONField(default=list, blank=True, editable=False)
    drift_interval = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(10)],
        help_text="Seconds between drift checks (jittered); at least 10.",
    )
    self_heal = models.BooleanField(
        default=False,
        help_text="Re-apply the last successful deployment when the cluster drifts from it.",
    )

    #: The drifted objects of the last drift check: kind, namespace, name, action, fields.
    drift = models.JSONField(default=list, blank=True, editable=False)
    drift_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_self_heal_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Health(models.TextChoices):
        HEALTHY = "healthy"
        PROGRESSING = "progressing"
        DEGRADED = "degraded"
        MISSING = "missing"
        UNKNOWN = "unknown"

    class SyncStatus(models.TextChoices):
        SYNCED = "synced"
        OUT_OF_SYNC = "out-of-sync"
        FAILED = "failed"
        UNKNOWN = "unknown"

    health = models.CharField(
        max_length=16, choices=Health.choices, default=Health.UNKNOWN, editable=False
    )
    health_message = models.TextField(blank=True, editable=False)
    sync_status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.UNKNOWN, editable=False
    )
    # Why the service is not as Git says when the live objects match what was applied
    # ("rolled back to <commit>, Git is at <commit>"); empty otherwise.
    sync_message = models.TextField(blank=True, editable=False)
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    last_applied_commit = models.CharField(max_length=64, blank=True, editable=False)
    last_applied_tree = models.CharField(max_length=64, blank=True, editable=False)
    last_applied_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Stored canonical, so that "deploy/web/" and "./deploy/web" are one directory;
        # a bad value is reported by the field's validator.
        with contextlib.suppress(rules.RuleError):
            self.k8s_yaml_dir = rules.service_dir(self.k8s_yaml_dir)


class Deployment(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        APPLYING = "applying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SUPERSEDED = "superseded"

    class Trigger(models.TextChoices):
        POLL = "poll"
        WEBHOOK = "webhook"
        MANUAL = "manual"
        ROLLBACK = "rollback"
        SELF_HEAL = "self-heal"

    class Reason(models.TextChoices):
        """Why a deployment ended as it did, for dashboards, metrics and notifications;
        ``error`` beside it holds the details. Later stages add their reasons here."""

        NONE = "", "-"
        SOURCE = "source", "Service directory missing or unreadable"
        FETCH = "fetch", "Could not read the repository"
        RENDER = "render", "Invalid bundle"
        CLUSTER = "cluster", "No cluster to apply to"
        INSTALL = "install", "Applyer could not be installed"
        CONFLICT = "conflict", "Object owned by another service"
        POLICY = "policy", "Outside the repository's allowed namespaces or kinds"
        APPLY = "apply", "Rejected by the cluster"
        PRUNE = "prune", "Prune failed"
        HEALTH = "health", "Objects did not become healthy"
        HOOK = "hook", "A sync hook failed"
        RETRIES = "retries", "Gave up after retries"
        SUPERSEDED = "superseded", "A newer commit overtook it"

    FINAL_STATES = (Status.SUCCEEDED, Status.FAILED, Status.SUPERSEDED)

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="deployments")
    cluster = models.ForeignKey(
        Cluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="deployments"
    )
    commit_sha = models.CharField(max_length=64)
    # What change detection compares: the tree id of the service directory, or a digest
    # of the ids of every path in ``paths_read`` when the build read more than it.
    tree_sha = models.CharField(max_length=64, blank=True)
    # The repository paths the build read (its directory, kustomize bases, components,
    # the root .gitopsignore); empty for a deployment never rendered.
    paths_read = models.JSONField(default=list, blank=True)
    # The digest of the service's settings that shape what is applied, when it was queued
    # (``pipeline.changes.settings_digest``): a change of them deploys again, Git or not.
    # Empty on rows stored before it was recorded: taken as today's settings.
    settings_digest = models.CharField(max_length=64, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.POLL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=12, choices=Reason.choices, default="", blank=True)
    rollback_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rollbacks"
    )
    bundle = models.TextField(
        blank=True, help_text="The rendered YAML: what this deployment applies (set when rendered)."
    )
    bundle_digest = models.CharField(max_length=64, blank=True)
    object_count = models.PositiveIntegerField(default=0)
    applied_objects = models.JSONField(
        default=list,
        blank=True,
        help_text="The bundle's objects, set when rendered: what this deployment applies "
        "(the service's inventory once it succeeded). What a failed apply wrote is in its "
        "output.",
    )
    pruned_objects = models.JSONField(default=list, blank=True)
    # What rendering skipped or noticed (a YAML document that is not a Kubernetes object).
    warnings = models.JSONField(default=list, blank=True)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Set once the objects are applied and the deployment waits for them to be healthy
    # (still ``applying``, but no longer on the apply queue): the wait ends by then.
    health_deadline = models.DateTimeField(null=True, blank=True, editable=False)
    # The hooks of this deployment (``syncworker.pipeline.hooks``): one record per hook
    # object created, with its phase, name, result and whether it was deleted.
    hooks = models.JSONField(default=list, blank=True, editable=False)
    # Which hook phase the deployment is in: "" before any, "PreSync" while its PreSync
    # hooks run (waiting, off the apply queue), "Sync" once they are done (next: the apply,
    # then the health wait with the Sync hooks), "PostSync" while those run.
    hook_phase = models.CharField(max_length=8, blank=True, default="", editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["service", "-id"], name="deploy_service_recent"),
            models.Index(fields=["status", "id"], name="deploy_status_order"),
            # The deployments ready to apply, per cluster in apply order: the backlog,
            # whatever the length of the history (``pipeline.deploying.ready_on``).
            models.Index(
                fields=["cluster", "id"],
                name="deploy_ready",
                condition=models.Q(status__in=["queued", "applying"], health_deadline=None)
                & ~models.Q(bundle_digest=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service_id}@{self.commit_sha[:12]} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATES


class AppliedObject(models.Model):
    """Inventory: every object of a service that may be on a cluster because we put it
    there: the last successful deployment's objects, plus whatever a failed or retried
    deployment got through before it stopped (``pipeline/inventory.py``).

    Prune compares the next bundle against these rows; only objects listed here (and
    carrying our labels on the cluster) are ever deleted.
    """

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="inventory")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="inventory")
    api_version = models.CharField(max_length=200)
    kind = models.CharField(max_length=100)
    namespace = models.CharField(max_length=253, blank=True)
    name = models.CharField(max_length=253)
    deployment = models.ForeignKey(
        Deployment, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "kind", "namespace", "name"]
        constraints = [
            # Namespace and name first: the ownership check looks up the bundle's objects
            # by them (an apiVersion bump is the same object), through this index.
            models.UniqueConstraint(
                fields=["cluster", "namespace", "name", "kind", "api_version"],
                name="one_owner_per_object",
            )
        ]

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class ReleaseArtifact(models.Model):
    """A file under the artifacts root, served at ``/<path>`` to pods that fetch it."""

    class Kind(models.TextChoices):
        SCRIPT = "scripts", "Start script"
        APP = "apps", "Application package"
        CONFIG = "configs", "Configuration template"

    path = models.CharField(
        max_length=500, unique=True, help_text="e.g. scripts/web/init.sh, apps/web/app.tar.gz"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, editable=False)
    size = models.PositiveBigIntegerField(default=0, editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    content_type = models.CharField(max_length=100, blank=True)
    uploaded_by = models.CharField(max_length=150, blank=True, editable=False)
    uploaded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class NotificationTarget(models.Model):
    """Where deployment results are posted (the seed's ``webhook_url``)."""

    url = models.URLField(max_length=500, unique=True)
    enabled = models.BooleanField(default=True)
    managed_by_config = models.BooleanField(default=False, editable=False)
    config_fields = models.JSONField(default=list, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["url"]

    def __str__(self) -> str:
        # Wherever Django shows the row (pages, messages, the admin log).
        return rules.host_only(self.url)
