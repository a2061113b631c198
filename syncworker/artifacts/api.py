"""``/api/artifacts/``: list, read, upload and delete release artifacts (staff only, the
API's default permission).

Uploads are multipart. ``POST`` with ``path`` and ``file`` publishes a file: 201 when
the path is new, 200 when it replaced the previous version (so CI can publish without
looking first). ``PUT /api/artifacts/<id>/`` with ``file`` replaces that artifact's file.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from syncworker.artifacts.storage import (
    ArtifactPathError,
    delete_artifact,
    store_artifact,
    writable_artifact_file,
)
from syncworker.models import ReleaseArtifact


class ArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ReleaseArtifact
        fields = [
            "id", "path", "kind", "size", "sha256", "content_type", "uploaded_by",
            "uploaded_at", "download_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, obj: ReleaseArtifact) -> str:
        """Where pods fetch it (``GITOPS["DOWNLOAD_BASE_URL"]``)."""
        base = str(settings.GITOPS["DOWNLOAD_BASE_URL"]).rstrip("/")
        return f"{base}/{quote(obj.path)}"


class ArtifactContentSerializer(serializers.Serializer):
    file = serializers.FileField()
    content_type = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )


class ArtifactUploadSerializer(ArtifactContentSerializer):
    path = serializers.CharField(max_length=500)

    def validate_path(self, value: str) -> str:
        try:
            writable_artifact_file(value)
        except ArtifactPathError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


def _store(path: str, data: dict[str, Any], request: Request) -> ReleaseArtifact:
    try:
        return store_artifact(
            path,
            data["file"],
            uploaded_by=request.user.get_username(),
            content_type=data["content_type"],
        )
    except ArtifactPathError as exc:
        # The tree changed between validation and the write (a file where a directory is).
        raise serializers.ValidationError({"path": [str(exc)]}) from None


class ArtifactViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ReleaseArtifact.objects.all()
    serializer_class = ArtifactSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[ReleaseArtifact]:
        queryset = super().get_queryset()
        if kind := self.request.query_params.get("kind"):
            if kind not in ReleaseArtifact.Kind.values:
                raise serializers.ValidationError(
                    {
                        "kind": f"unknown kind {kind[:100]!r}; one of "
                        + ", ".join(ReleaseArtifact.Kind.values)
                    }
                )
            queryset = queryset.filter(kind=kind)
        return queryset

    @extend_schema(parameters=[OpenApiParameter("kind", enum=ReleaseArtifact.Kind.values)])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": ArtifactUploadSerializer},
        responses={201: ArtifactSerializer, 200: ArtifactSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload = ArtifactUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        path = upload.validated_data["path"]
        existed = ReleaseArtifact.objects.filter(path=path).exists()
        artifact = _store(path, upload.validated_data, request)
        return Response(
            self.get_serializer(artifact).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    @extend_schema(
        request={"multipart/form-data": ArtifactContentSerializer},
        responses=ArtifactSerializer,
    )
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        artifact = self.get_object()
        content = ArtifactContentSerializer(data=request.data)
        content.is_valid(raise_exception=True)
        artifact = _store(artifact.path, content.validated_data, request)
        return Response(self.get_serializer(artifact).data)

    def perform_destroy(self, instance: ReleaseArtifact) -> None:
        delete_artifact(instance.path)
