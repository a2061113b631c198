from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from syncworker.api import views
from syncworker.api.status import ReposStatusView
from syncworker.api.webhooks import github_webhook
from syncworker.artifacts.api import ArtifactViewSet

router = DefaultRouter()
router.register("repositories", views.RepositoryViewSet)
router.register("services", views.ServiceViewSet)
router.register("clusters", views.ClusterViewSet)
router.register("deployments", views.DeploymentViewSet)
router.register("artifacts", ArtifactViewSet)

urlpatterns = [
    path("v1/gitops/repos", ReposStatusView.as_view(), name="gitops-repos"),
    path("v1/webhooks/github", github_webhook, name="github-webhook"),
    path("v1/webhooks/github/<slug:key>", github_webhook, name="github-webhook-repo"),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
