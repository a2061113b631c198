"""The dashboard at the site root, and the JSON the ``gitops`` CLI reads."""

from django.urls import path

from syncworker.dashboard import api, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("services/<slug:name>/", views.service_page, name="service"),
    path("services/<slug:name>/diff/", views.service_diff, name="service-diff"),
    path("services/<slug:name>/sync/", views.sync_service, name="sync-service"),
    path("services/<slug:name>/redeploy/", views.redeploy_service, name="redeploy-service"),
    path(
        "services/<slug:name>/deployments/<int:deployment_id>/rollback/",
        views.rollback,
        name="rollback",
    ),
    path("repositories/<slug:key>/sync/", views.sync_repository, name="sync-repository"),
    path("api/overview/", api.OverviewView.as_view(), name="api-overview"),
    path(
        "api/overview/services/<slug:name>/",
        api.ServiceOverviewView.as_view(),
        name="api-service",
    ),
    path(
        "api/overview/services/<slug:name>/deployments/<int:deployment_id>/",
        api.ServiceDeploymentView.as_view(),
        name="api-service-deployment",
    ),
    path(
        "api/overview/repositories/<slug:key>/",
        api.RepositoryOverviewView.as_view(),
        name="api-repository",
    ),
]
