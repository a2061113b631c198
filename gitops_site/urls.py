from django.contrib import admin
from django.urls import include, path

from syncworker.api.health import healthz, readyz
from syncworker.api.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("syncworker.api.urls")),
    path("", include("syncworker.artifacts.urls")),
    path("", include("syncworker.dashboard.urls")),
]
