"""Upload release artifacts in the admin. Not registered here: the site's admin module
registers ``ReleaseArtifactAdmin`` for ``ReleaseArtifact``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from syncworker.artifacts.storage import (
    ArtifactPathError,
    delete_artifact,
    store_artifact,
    writable_artifact_file,
)
from syncworker.models import ReleaseArtifact

READ_ONLY = ("kind", "size", "sha256", "uploaded_by", "uploaded_at")


class ReleaseArtifactForm(forms.ModelForm):
    file = forms.FileField(
        help_text="Replaces the file at this path atomically: downloads in progress finish "
        "with the old version."
    )

    class Meta:
        model = ReleaseArtifact
        fields = ("path", "content_type")
        help_texts = {"content_type": "Leave blank to guess it from the file name."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["file"].required = False
            self.fields["file"].help_text = "Leave empty to keep the current file."

    def clean_path(self) -> str:
        path: str = self.cleaned_data["path"]
        try:
            writable_artifact_file(path)
        except ArtifactPathError as exc:
            raise forms.ValidationError(str(exc)) from None
        return path


class ReleaseArtifactAdmin(admin.ModelAdmin):
    form = ReleaseArtifactForm
    list_display = ("path", "kind", "size", "sha256_short", "uploaded_at", "uploaded_by")
    list_filter = ("kind",)
    search_fields = ("path",)

    @admin.display(description="sha256", ordering="sha256")
    def sha256_short(self, obj: ReleaseArtifact) -> str:
        return obj.sha256[:12]

    def get_fields(self, request: HttpRequest, obj: ReleaseArtifact | None = None) -> Any:
        if obj is None:
            return ("path", "file", "content_type")
        return ("path", "file", "content_type", *READ_ONLY)

    def get_readonly_fields(self, request: HttpRequest, obj: ReleaseArtifact | None = None) -> Any:
        # Renaming would break the pods that download the old path: upload a new one.
        return ("path", *READ_ONLY) if obj is not None else READ_ONLY

    def save_model(
        self, request: HttpRequest, obj: ReleaseArtifact, form: forms.ModelForm, change: bool
    ) -> None:
        upload = form.cleaned_data.get("file")
        if upload is None:
            # Only the content type changed; the upload time must keep matching the file.
            obj.save(update_fields=["content_type"])
            return
        stored = store_artifact(
            obj.path,
            upload,
            uploaded_by=request.user.get_username(),
            content_type=obj.content_type,
        )
        obj.pk = stored.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: ReleaseArtifact) -> None:
        delete_artifact(obj.path)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ReleaseArtifact]) -> None:
        for path in queryset.values_list("path", flat=True):
            delete_artifact(path)
