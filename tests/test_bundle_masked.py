"""Where a rendered bundle is shown (the API's deployment detail, the admin's deployment
page), Secret values are masked; the stored bundle, which is what gets applied and
rolled back, keeps them."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncworker.models import Deployment, Repository, Service
from syncworker.render.bundle import make_bundle

pytestmark = pytest.mark.django_db
VALUE = "s3cr3t-production-password"
ENCODED = base64.b64encode(VALUE.encode()).decode()


@pytest.fixture
def deployment() -> Deployment:
    repo = Repository.objects.create(key="r", provider="git", url="https://git.example.com/r.git")
    service = Service.objects.create(name="web", repository=repo, k8s_yaml_dir="web")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-credentials-prod-45m4hf4ff7", "namespace": "web"},
        "data": {"DATABASE_PASSWORD": ENCODED},
    }
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
    bundle = make_bundle([secret, config])
    return Deployment.objects.create(
        service=service, commit_sha="c" * 40, bundle=bundle.yaml, bundle_digest=bundle.digest
    )


def test_the_api_shows_the_bundle_with_secret_values_masked(deployment: Deployment) -> None:
    user = User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    answer = api.get(f"/api/deployments/{deployment.pk}/")

    assert answer.status_code == 200
    shown = answer.json()["bundle"]
    assert "DATABASE_PASSWORD: (hidden)" in shown and "kind: ConfigMap" in shown
    assert ENCODED not in answer.content.decode() and VALUE not in answer.content.decode()
    deployment.refresh_from_db()
    assert ENCODED in deployment.bundle, "what is applied keeps the value"


def test_the_admin_shows_the_bundle_with_secret_values_masked(
    deployment: Deployment, admin_client: Client
) -> None:
    page = admin_client.get(f"/admin/syncworker/deployment/{deployment.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "DATABASE_PASSWORD: (hidden)" in text
    assert ENCODED not in text and VALUE not in text
