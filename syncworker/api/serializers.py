"""Explicit serializers. Credentials are write-only: accepted on input, never output;
an update that leaves them out keeps the stored value. A bundle is shown with its
Secret values masked. ``config_fields``: what the config file sets, which the API
refuses to change (``syncworker.guards``)."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from syncworker.kube.secrets import mask_secret_values
from syncworker.models import Cluster, Deployment, Repository, Service


class ModelRulesMixin(serializers.ModelSerializer):
    """Run the model's own validation (``full_clean``: field validators and ``clean``),
    so the API refuses exactly what the admin and the config file refuse, and stores the
    values the model normalised."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        model: Any = self.Meta.model
        instance = copy.copy(self.instance) if self.instance is not None else model()
        for name, value in attrs.items():
            setattr(instance, name, value)
        try:
            instance.full_clean(validate_unique=False, validate_constraints=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return {name: getattr(instance, name) for name in attrs}


class RepositorySerializer(ModelRulesMixin):
    token = serializers.CharField(write_only=True, required=False, allow_blank=True)
    webhook_secret = serializers.CharField(write_only=True, required=False, allow_blank=True)
    has_token = serializers.SerializerMethodField()
    has_webhook_secret = serializers.SerializerMethodField()

    class Meta:
        model = Repository
        fields = [
            "id",
            "key",
            "provider",
            "owner",
            "name",
            "url",
            "api_url",
            "branch",
            "token",
            "webhook_secret",
            "has_token",
            "has_webhook_secret",
            "poll_interval",
            "allowed_namespaces",
            "allowed_cluster_resources",
            "enabled",
            "managed_by_config",
            "config_fields",
            "last_polled_at",
            "last_seen_commit",
            "last_error",
            "consecutive_failures",
            "next_poll_after",
        ]
        read_only_fields = [
            "managed_by_config",
            "config_fields",
            "last_polled_at",
            "last_seen_commit",
            "last_error",
            "consecutive_failures",
            "next_poll_after",
        ]

    def get_has_token(self, obj: Repository) -> bool:
        return bool(obj.token)

    def get_has_webhook_secret(self, obj: Repository) -> bool:
        return bool(obj.webhook_secret)


class ServiceSerializer(ModelRulesMixin):
    class Meta:
        model = Service
        fields = [
            "id",
            "name",
            "repository",
            "k8s_yaml_dir",
            "cluster",
            "namespace",
            "prune",
            "stateless",
            "recurse",
            "include",
            "exclude",
            "create_namespace",
            "enabled",
            "wait",
            "health_timeout",
            "managed_by_config",
            "config_fields",
            "last_applied_commit",
            "last_applied_at",
            "health",
            "health_message",
            "sync_status",
            "sync_message",
            "drift_interval",
            "self_heal",
            "drift",
            "drift_checked_at",
        ]
        read_only_fields = [
            "managed_by_config",
            "config_fields",
            "last_applied_commit",
            "last_applied_at",
            "health",
            "health_message",
            "sync_status",
            "sync_message",
            "drift",
            "drift_checked_at",
        ]


class ClusterSerializer(ModelRulesMixin):
    class Meta:
        model = Cluster
        fields = [
            "id",
            "name",
            "applyer",
            "settings",
            "is_default",
            "managed_by_config",
            "config_fields",
        ]
        read_only_fields = ["managed_by_config", "config_fields"]


class DeploymentSerializer(serializers.ModelSerializer):
    service_name = serializers.CharField(source="service.name", read_only=True)
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "service",
            "service_name",
            "cluster",
            "commit_sha",
            "tree_sha",
            "trigger",
            "status",
            "reason",
            "rollback_of",
            "bundle_digest",
            "object_count",
            "applied_objects",
            "pruned_objects",
            "warnings",
            "paths_read",
            "hooks",
            "hook_phase",
            "output",
            "error",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, obj: Deployment) -> float | None:
        duration = obj.duration
        return round(duration.total_seconds(), 3) if duration is not None else None


class DeploymentDetailSerializer(DeploymentSerializer):
    # What was applied, with Secret values masked (the stored bundle keeps them, for
    # the apply path and a rollback).
    bundle = serializers.SerializerMethodField()

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "bundle"]
        read_only_fields = fields

    def get_bundle(self, obj: Deployment) -> str:
        return mask_secret_values(obj.bundle)


class ActionResultSerializer(serializers.Serializer):
    detail = serializers.CharField()
    deployment = serializers.IntegerField(required=False)

    def to_representation(self, instance: Any) -> Any:
        return instance


class ObjectDiffSerializer(serializers.Serializer):
    api_version = serializers.CharField()
    kind = serializers.CharField()
    namespace = serializers.CharField()
    name = serializers.CharField()
    action = serializers.ChoiceField(choices=["created", "changed", "pruned"])
    changed_fields = serializers.ListField(child=serializers.CharField())
    diff = serializers.CharField(
        help_text="Unified diff of the normalised YAML; Secret values masked."
    )


class ServiceDiffSerializer(serializers.Serializer):
    """What a sync would change (read-only; built by syncworker.pipeline.diffing)."""

    service = serializers.CharField()
    cluster = serializers.CharField()
    compared = serializers.CharField(help_text="branch head, commit or last successful deployment")
    commit = serializers.CharField()
    changed = serializers.BooleanField()
    unchanged = serializers.IntegerField(help_text="Objects the sync would leave as they are.")
    objects = ObjectDiffSerializer(many=True)
