"""The Django admin is the configuration UI: repositories, services, clusters, history.

Credentials are write-only here: the form never renders a stored token, webhook secret
or notification URL back, a blank field keeps the stored value, and a checkbox clears
it. A deployment's bundle is shown with its Secret values masked.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from syncworker.adminguard import GuardedAdmin
from syncworker.artifacts.admin import ReleaseArtifactAdmin
from syncworker.kube.secrets import mask_secret_values
from syncworker.models import (
    AppliedObject,
    Cluster,
    Deployment,
    NotificationTarget,
    ReleaseArtifact,
    Repository,
    Service,
)
from syncworker.pipeline import actions as pipeline_actions
from syncworker.pipeline import diffing

SECRET_FIELDS = ("token", "webhook_secret")
# Django 6 changes the default scheme of URL form fields; say which one we mean.
URL_FIELDS: dict[type[models.Field[Any, Any]], dict[str, Any]] = {
    models.URLField: {"assume_scheme": "https"}
}
STATUS_COLOURS: dict[str, str] = {
    Deployment.Status.QUEUED: "#777",
    Deployment.Status.APPLYING: "#1f6feb",
    Deployment.Status.SUCCEEDED: "#1a7f37",
    Deployment.Status.FAILED: "#cf222e",
    Deployment.Status.SUPERSEDED: "#9a6700",
}


def _run_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, objects: Any, action: Any, done: str
) -> None:
    """Apply one of syncworker.pipeline.actions to each selected object and report."""
    ok = 0
    for obj in objects:
        try:
            action(obj)
            ok += 1
        except pipeline_actions.ActionError as exc:
            modeladmin.message_user(request, str(exc), level=messages.WARNING)
        except pipeline_actions.QueueUnavailable:
            # The next one would fail the same way: stop and say what did not happen.
            modeladmin.message_user(
                request,
                f"not queued: the task broker (Redis) is unreachable; {ok} of the selected "
                "were queued, try the rest again once it is back",
                level=messages.ERROR,
            )
            break
    if ok:
        modeladmin.message_user(request, f"{done}: {ok}", level=messages.SUCCESS)


class RepositoryForm(forms.ModelForm):
    api_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="GitHub API root (GitHub Enterprise or a local GitHub-compatible server).",
    )
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored token.",
    )
    webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored secret.",
    )
    clear_token = forms.BooleanField(required=False, label="Clear the stored token")
    clear_webhook_secret = forms.BooleanField(
        required=False, label="Clear the stored webhook secret"
    )

    class Meta:
        model = Repository
        fields = (
            "key",
            "provider",
            "owner",
            "name",
            "url",
            "api_url",
            "branch",
            "token",
            "webhook_secret",
            "poll_interval",
            "allowed_namespaces",
            "allowed_cluster_resources",
            "enabled",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Never send a stored secret to the browser, not even in the initial data.
        for name in SECRET_FIELDS:
            self.initial[name] = ""
            if self.instance.pk and getattr(self.instance, name):
                self.fields[name].help_text = "A value is stored (write-only). " + (
                    "Leave blank to keep it."
                )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in SECRET_FIELDS:
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(
                    Repository.objects.only(name).get(pk=self.instance.pk), name
                )
        return cleaned


@admin.register(Repository)
class RepositoryAdmin(GuardedAdmin):
    form = RepositoryForm
    secret_fields = SECRET_FIELDS
    formfield_overrides = URL_FIELDS
    list_display = (
        "key",
        "provider",
        "url",
        "branch",
        "enabled",
        "last_seen_commit_short",
        "last_polled_at",
        "consecutive_failures",
    )
    list_filter = ("provider", "enabled", "managed_by_config", "branch")
    search_fields = ("key", "owner", "name", "url")
    readonly_fields = (
        "managed_by_config",
        "last_polled_at",
        "last_seen_commit",
        "last_error",
        "consecutive_failures",
        "next_poll_after",
        "has_token",
        "has_webhook_secret",
    )

    actions = ["sync_now"]

    @admin.action(description="Sync now (poll the selected repositories)")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        _run_action(self, request, queryset, pipeline_actions.sync_now, "sync queued")

    @admin.display(description="commit")
    def last_seen_commit_short(self, obj: Repository) -> str:
        return obj.last_seen_commit[:12]

    @admin.display(boolean=True, description="token stored")
    def has_token(self, obj: Repository) -> bool:
        return bool(obj.token)

    @admin.display(boolean=True, description="webhook secret stored")
    def has_webhook_secret(self, obj: Repository) -> bool:
        return bool(obj.webhook_secret)


class PatternsField(forms.CharField):
    """A list of gitignore-style patterns, edited one per line (blank lines dropped);
    the model's rule checks them, as the API and the config file do."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "cols": 60}))
        super().__init__(strip=False, required=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


class ServiceForm(forms.ModelForm):
    include = PatternsField(
        help_text="One gitignore-style pattern per line, relative to the directory: read "
        "only the files they match. Empty: all files."
    )
    exclude = PatternsField(
        help_text="One gitignore-style pattern per line: leave out the files they match "
        "(legacy/, all-in-one/, *.md)."
    )

    class Meta:
        model = Service
        fields = (
            "name",
            "repository",
            "k8s_yaml_dir",
            "cluster",
            "enabled",
            "namespace",
            "create_namespace",
            "recurse",
            "include",
            "exclude",
            "prune",
            "stateless",
        )


@admin.register(Service)
class ServiceAdmin(GuardedAdmin):
    form = ServiceForm
    fieldsets = (
        (None, {"fields": ("name", "repository", "k8s_yaml_dir", "cluster", "enabled")}),
        (
            "What is read and where it goes",
            {
                "fields": (
                    "namespace",
                    "create_namespace",
                    "recurse",
                    "include",
                    "exclude",
                    "prune",
                    "stateless",
                )
            },
        ),
        (
            "State",
            {
                "fields": (
                    "managed_by_config",
                    "last_applied_commit",
                    "last_applied_tree",
                    "last_applied_at",
                )
            },
        ),
        (
            "Drift and diff",
            {
                "fields": (
                    "drift_interval",
                    "self_heal",
                    "health",
                    "sync_status",
                    "sync_message",
                    "drift_display",
                    "drift_checked_at",
                    "last_self_heal_at",
                    "pending_diff",
                    "roll_back_to",
                )
            },
        ),
    )
    list_display = (
        "name",
        "repository",
        "k8s_yaml_dir",
        "cluster",
        "namespace",
        "enabled",
        "health",
        "sync_status",
        "last_applied_commit_short",
        "last_applied_at",
    )
    list_filter = (
        "enabled",
        "health",
        "sync_status",
        "prune",
        "stateless",
        "recurse",
        "create_namespace",
        "repository",
        "cluster",
    )
    search_fields = ("name", "k8s_yaml_dir", "repository__key", "namespace")
    list_select_related = ("repository", "cluster")
    readonly_fields = (
        "managed_by_config",
        "health",
        "health_message",
        "sync_status",
        "sync_message",
        "last_applied_commit",
        "last_applied_tree",
        "last_applied_at",
        "health",
        "sync_status",
        "drift_display",
        "drift_checked_at",
        "last_self_heal_at",
        "pending_diff",
        "roll_back_to",
    )

    actions = ["redeploy"]

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.rollback_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_rollback"
        urls = [path("<int:service_id>/rollback/<int:deployment_id>/", view, name=name)]
        return [*urls, *super().get_urls()]

    @admin.display(description="drift (last check)")
    def drift_display(self, obj: Service) -> str:
        return format_html_join(
            "", "<div>{} {}/{} {} {}</div>",
            ((d.get("kind"), d.get("namespace"), d.get("name"), d.get("state"),
              ", ".join(d.get("fields") or [])) for d in obj.drift or []),
        ) or "none"  # fmt: skip

    @admin.display(description="what a sync at the branch head would change")
    def pending_diff(self, obj: Service) -> str:
        if obj.pk is None:
            return ""
        try:
            text = diffing.diff_service(obj).text()
        except diffing.DiffFailed as exc:
            text = f"no diff: {exc}"
        return format_html('<pre class="gitops-diff">{}</pre>', text)

    @admin.display(description="roll back to")
    def roll_back_to(self, obj: Service) -> str:
        if obj.pk is None:
            return ""
        done = obj.deployments.filter(status=Deployment.Status.SUCCEEDED).order_by("-pk")[:10]
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_rollback"
        return format_html_join(
            "", '<div><a href="{}">deployment {} at {}</a></div>',
            ((reverse(name, args=[obj.pk, d.pk]), d.pk, d.commit_sha[:12]) for d in done),
        ) or "no successful deployment"  # fmt: skip

    def rollback_view(
        self, request: HttpRequest, service_id: int, deployment_id: int
    ) -> HttpResponse:
        """Show what rolling back would change; roll back only on a confirming POST."""
        service = get_object_or_404(Service, pk=service_id)
        target = get_object_or_404(Deployment, pk=deployment_id, service=service)
        if not self.has_change_permission(request, service):
            raise PermissionDenied
        back = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[service.pk]
        )
        if request.method == "POST":
            try:
                pipeline_actions.rollback(target)
            except pipeline_actions.ActionError as exc:
                self.message_user(request, str(exc), level=messages.WARNING)
            else:
                self.message_user(request, "rollback queued", level=messages.SUCCESS)
            return HttpResponseRedirect(back)
        try:
            diff_text, problem = diffing.diff_deployment(target).text(), ""
        except diffing.DiffFailed as exc:
            diff_text, problem = "", str(exc)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Roll {service.name} back to deployment {target.pk}?",
            "opts": self.opts,
            "service": service,
            "target": target,
            "diff": diff_text,
            "problem": problem,
            "back": back,
        }
        return TemplateResponse(request, "admin/syncworker/service/rollback_confirm.html", context)

    @admin.action(description="Redeploy at the branch head")
    def redeploy(self, request: HttpRequest, queryset: QuerySet[Service]) -> None:
        _run_action(
            self,
            request,
            queryset.select_related("repository"),
            pipeline_actions.redeploy,
            "redeploy queued",
        )

    @admin.display(description="commit")
    def last_applied_commit_short(self, obj: Service) -> str:
        return obj.last_applied_commit[:12]


@admin.register(Cluster)
class ClusterAdmin(GuardedAdmin):
    list_display = ("name", "applyer", "is_default", "managed_by_config")
    list_filter = ("applyer", "is_default")
    search_fields = ("name",)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "service",
        "status_badge",
        "reason",
        "commit_short",
        "trigger",
        "queued_at",
        "duration_display",
        "error_short",
    )
    list_filter = ("status", "reason", "trigger", "service", "cluster")
    search_fields = ("service__name", "commit_sha", "error")
    date_hierarchy = "queued_at"
    list_select_related = ("service",)
    # The bundle is shown with Secret values masked; the stored one keeps them.
    exclude = ("bundle",)
    readonly_fields = (
        *(f.name for f in Deployment._meta.fields if f.name != "bundle"),
        "bundle_masked",
    )
    actions = ["roll_back"]

    @admin.action(description="Roll back to this deployment (re-apply its bundle)")
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        _run_action(self, request, queryset, pipeline_actions.rollback, "rollback queued")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Deployment) -> str:
        return format_html(
            '<b style="color:{}" class="status-{}">{}</b>',
            STATUS_COLOURS.get(obj.status, "#000"),
            obj.status,
            obj.status,
        )

    @admin.display(description="bundle (Secret values hidden)")
    def bundle_masked(self, obj: Deployment) -> str:
        return format_html("<pre>{}</pre>", mask_secret_values(obj.bundle))

    @admin.display(description="commit")
    def commit_short(self, obj: Deployment) -> str:
        return obj.commit_sha[:12]

    @admin.display(description="duration")
    def duration_display(self, obj: Deployment) -> str:
        duration = obj.duration
        return f"{duration.total_seconds():.1f}s" if duration is not None else ""

    @admin.display(description="error")
    def error_short(self, obj: Deployment) -> str:
        return obj.error[:120]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AppliedObject)
class AppliedObjectAdmin(admin.ModelAdmin):
    list_display = ("kind", "namespace", "name", "api_version", "service", "cluster")
    list_filter = ("kind", "cluster", "service")
    search_fields = ("name", "namespace", "kind")
    list_select_related = ("service", "cluster")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReleaseArtifact)
class ArtifactAdmin(ReleaseArtifactAdmin):
    pass


class NotificationTargetForm(forms.ModelForm):
    """The URL is a credential (a Slack webhook's path is its secret): write-only, like
    a token. Pages show its host only (``NotificationTarget.__str__``)."""

    url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: where deployment results are posted.",
    )

    class Meta:
        model = NotificationTarget
        fields = ("url", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["url"] = ""
        if self.instance.pk:
            self.fields[
                "url"
            ].help_text = f"A URL is stored: {self.instance} (write-only). Leave blank to keep it."

    def clean_url(self) -> str:
        url = str(self.cleaned_data.get("url") or "")
        if url:
            return url
        if not self.instance.pk:
            raise forms.ValidationError("A URL is required.")
        return NotificationTarget.objects.only("url").get(pk=self.instance.pk).url


@admin.register(NotificationTarget)
class NotificationTargetAdmin(GuardedAdmin):
    form = NotificationTargetForm
    secret_fields = ("url",)
    list_display = ("__str__", "enabled", "managed_by_config")
    list_filter = ("enabled",)
    # No search on the URL: matching or not would reveal it a character at a time.
