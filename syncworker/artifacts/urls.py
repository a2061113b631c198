"""``/scripts/<path>``, ``/apps/<path>``, ``/configs/<path>``: include at the site root."""

from django.urls import path

from syncworker.artifacts.storage import KINDS
from syncworker.artifacts.views import serve_artifact

app_name = "artifacts"

# One name for the three prefixes: reverse("artifacts:file", kwargs={"kind": …, "rest": …}).
urlpatterns = [
    path(f"{kind}/<path:rest>", serve_artifact, {"kind": kind}, name="file") for kind in KINDS
]
