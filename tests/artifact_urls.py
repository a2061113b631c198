"""URLs for tests/test_artifacts.py: the artifact downloads at the root, the API viewset
on its own router and the admin class on a private admin site, so the tests depend on
nobody else's wiring."""

from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from syncworker.artifacts.admin import ReleaseArtifactAdmin
from syncworker.artifacts.api import ArtifactViewSet
from syncworker.models import ReleaseArtifact

site = admin.AdminSite(name="artifacts_admin")
site.register(ReleaseArtifact, ReleaseArtifactAdmin)

router = DefaultRouter()
router.register("artifacts", ArtifactViewSet)

urlpatterns = [
    path("admin/", site.urls),
    path("api/", include(router.urls)),
    path("", include("syncworker.artifacts.urls")),
]
