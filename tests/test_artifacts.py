"""Release artifacts: safe paths, atomic stores, public downloads with validators and
ranges, and staff-only uploads through the admin and the API."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.http import http_date, parse_http_date
from rest_framework.test import APIClient

from syncworker.artifacts.storage import (
    ArtifactPathError,
    delete_artifact,
    safe_artifact_path,
    store_artifact,
)
from syncworker.models import ReleaseArtifact

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.artifact_urls")]

SECRET = b"SECRET-OUTSIDE-THE-ROOT"
INIT_SH = b"#!/bin/sh\nset -e\necho starting web\n"
CONF = b"listen 80;\n"


@pytest.fixture
def root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    settings.GITOPS = {**settings.GITOPS, "ARTIFACTS_ROOT": root}
    return root


@pytest.fixture
def plain_static(settings) -> None:
    # Outside DEBUG the manifest storage wants collectstatic; admin pages need {% static %}.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def store(path: str, data: bytes, **kwargs: str) -> ReleaseArtifact:
    return store_artifact(path, io.BytesIO(data), uploaded_by="ci", **kwargs)


def body(response) -> bytes:
    return response.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "path",
    ["scripts/web/init.sh", "apps/web/app.tar.gz", "configs/templates/web.yaml", "apps/a b/x"],
)
def test_paths_under_the_three_kinds_are_accepted(path: str) -> None:
    assert safe_artifact_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "scripts",
        "scripts/",
        "other/web/init.sh",
        "/scripts/web/init.sh",
        "scripts//init.sh",
        "scripts/./init.sh",
        "scripts/../settings.py",
        "scripts/web/..",
        "configs/templates/..\\x",
        "scripts/web/init.sh\x00.png",
        "scripts/%2e%2e/x",
        "apps/..%2f..%2fetc/passwd",
        "scripts/%252e%252e/x",
        "scripts/web/.init.sh.abc.upload",
        "scripts/" + "a" * 500,
    ],
)
def test_unsafe_paths_are_refused_with_a_message_naming_them(path: str) -> None:
    with pytest.raises(ArtifactPathError) as error:
        safe_artifact_path(path)
    assert repr(path[:60]) in str(error.value)


def test_a_stored_artifact_is_served_with_its_checksum_as_a_strong_etag(
    client: Client, root: Path
) -> None:
    artifact = store("scripts/web/init.sh", INIT_SH)
    assert artifact.kind == "scripts"
    assert (artifact.size, artifact.sha256) == (len(INIT_SH), sha(INIT_SH))
    assert (root / "scripts/web/init.sh").read_bytes() == INIT_SH

    response = client.get("/scripts/web/init.sh")

    assert response.status_code == 200
    assert body(response) == INIT_SH
    assert response["ETag"] == f'"{sha(INIT_SH)}"'
    assert response["Content-Length"] == str(len(INIT_SH))
    assert parse_http_date(response["Last-Modified"]) == int(artifact.uploaded_at.timestamp())
    assert response["Content-Type"] == "text/x-shellscript"
    assert response["Cache-Control"] == "no-cache"
    assert response["Accept-Ranges"] == "bytes"


def test_an_app_package_is_served_as_gzip_without_content_encoding(
    client: Client, root: Path
) -> None:
    store("apps/web/app.tar.gz", b"\x1f\x8b" + b"\x00" * 100)
    response = client.get("/apps/web/app.tar.gz")
    assert response["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in response
    assert len(body(response)) == 102


def test_a_file_put_there_by_hand_gets_an_etag_from_size_and_mtime(
    client: Client, root: Path
) -> None:
    (root / "configs/templates").mkdir(parents=True)
    (root / "configs/templates/web.conf").write_bytes(CONF)
    response = client.get("/configs/templates/web.conf")
    assert body(response) == CONF
    etag = response["ETag"]
    assert etag.startswith('"') and etag != f'"{sha(CONF)}"'
    assert client.get("/configs/templates/web.conf", HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_a_row_that_no_longer_describes_the_file_does_not_lend_it_its_checksum(
    client: Client, root: Path
) -> None:
    store("scripts/web/init.sh", INIT_SH)
    target = root / "scripts/web/init.sh"
    target.write_bytes(INIT_SH.upper())  # same size, new content, copied in by hand
    later = time.time() + 30
    os.utime(target, (later, later))
    response = client.get("/scripts/web/init.sh", HTTP_IF_NONE_MATCH=f'"{sha(INIT_SH)}"')
    assert response.status_code == 200
    assert body(response) == INIT_SH.upper()


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "*", '"other", {etag}', "W/{etag}", '"a", W/"b" , W/{etag}'],
)
def test_a_matching_if_none_match_answers_304_without_a_body(
    client: Client, root: Path, if_none_match: str
) -> None:
    store("scripts/web/init.sh", INIT_SH)
    etag = f'"{sha(INIT_SH)}"'
    response = client.get(
        "/scripts/web/init.sh", HTTP_IF_NONE_MATCH=if_none_match.format(etag=etag)
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"] == "no-cache"


def test_a_new_version_is_downloaded_again_despite_the_old_etag(client: Client, root: Path) -> None:
    store("scripts/web/init.sh", INIT_SH)
    first = client.get("/scripts/web/init.sh")
    old_etag = first["ETag"]
    body(first)
    store("scripts/web/init.sh", b"#!/bin/sh\necho v2\n")
    response = client.get("/scripts/web/init.sh", HTTP_IF_NONE_MATCH=old_etag)
    assert response.status_code == 200
    assert body(response) == b"#!/bin/sh\necho v2\n"


def test_if_modified_since_answers_304_unless_the_file_is_newer(client: Client, root: Path) -> None:
    artifact = store("scripts/web/init.sh", INIT_SH)
    modified = int(artifact.uploaded_at.timestamp())
    not_modified = client.get("/scripts/web/init.sh", HTTP_IF_MODIFIED_SINCE=http_date(modified))
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    stale = client.get("/scripts/web/init.sh", HTTP_IF_MODIFIED_SINCE=http_date(modified - 60))
    assert stale.status_code == 200
    assert body(stale) == INIT_SH


def test_head_has_the_headers_of_get_and_no_body(client: Client, root: Path) -> None:
    store("scripts/web/init.sh", INIT_SH)
    get = client.get("/scripts/web/init.sh")
    head = client.head("/scripts/web/init.sh")
    assert head.status_code == 200
    assert head.content == b""
    for header in ("ETag", "Last-Modified", "Content-Length", "Content-Type", "Accept-Ranges"):
        assert head[header] == get[header]
    body(get)


DATA = b"0123456789"


@pytest.mark.parametrize(
    ("range_header", "content", "content_range"),
    [
        ("bytes=0-3", b"0123", "bytes 0-3/10"),
        ("bytes=5-", b"56789", "bytes 5-9/10"),
        ("bytes=-2", b"89", "bytes 8-9/10"),
        ("bytes=7-100", b"789", "bytes 7-9/10"),
        ("bytes=-50", DATA, "bytes 0-9/10"),
    ],
)
def test_a_single_range_answers_206_with_only_those_bytes(
    client: Client, root: Path, range_header: str, content: bytes, content_range: str
) -> None:
    store("apps/web/app.tar.gz", DATA)
    response = client.get("/apps/web/app.tar.gz", HTTP_RANGE=range_header)
    assert response.status_code == 206
    assert body(response) == content
    assert response["Content-Range"] == content_range
    assert response["Content-Length"] == str(len(content))


@pytest.mark.parametrize("range_header", ["bytes=10-", "bytes=50-60", "bytes=-0"])
def test_an_unsatisfiable_range_answers_416_with_the_size(
    client: Client, root: Path, range_header: str
) -> None:
    store("apps/web/app.tar.gz", DATA)
    response = client.get("/apps/web/app.tar.gz", HTTP_RANGE=range_header)
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */10"


@pytest.mark.parametrize(
    "range_header", ["bytes=0-1,4-5", "bytes=5-2", "items=0-3", "bytes=a-b", "bytes=" + "9" * 40]
)
def test_several_or_invalid_ranges_get_the_whole_file(
    client: Client, root: Path, range_header: str
) -> None:
    store("apps/web/app.tar.gz", DATA)
    response = client.get("/apps/web/app.tar.gz", HTTP_RANGE=range_header)
    assert response.status_code == 200
    assert body(response) == DATA


def test_if_range_resumes_only_the_same_version(client: Client, root: Path) -> None:
    artifact = store("apps/web/app.tar.gz", DATA)
    etag = f'"{artifact.sha256}"'
    last_modified = http_date(int(artifact.uploaded_at.timestamp()))

    for validator in (etag, last_modified):
        resumed = client.get("/apps/web/app.tar.gz", HTTP_RANGE="bytes=4-", HTTP_IF_RANGE=validator)
        assert resumed.status_code == 206
        assert body(resumed) == b"456789"

    for validator in ('"an-older-version"', f"W/{etag}", http_date(0)):
        restarted = client.get(
            "/apps/web/app.tar.gz", HTTP_RANGE="bytes=4-", HTTP_IF_RANGE=validator
        )
        assert restarted.status_code == 200
        assert body(restarted) == DATA


def test_head_ignores_range(client: Client, root: Path) -> None:
    store("apps/web/app.tar.gz", DATA)
    response = client.head("/apps/web/app.tar.gz", HTTP_RANGE="bytes=0-3")
    assert response.status_code == 200
    assert response["Content-Length"] == "10"


@pytest.fixture
def secrets_around(root: Path, tmp_path: Path) -> None:
    """Files where a traversal would land: next to the root and at its top level."""
    for place in ("settings.py", "x", "etc/passwd"):
        for base in (tmp_path, root):
            (base / place).parent.mkdir(parents=True, exist_ok=True)
            (base / place).write_bytes(SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "/scripts/../settings.py",
        "/scripts/%2e%2e/x",
        "/scripts/%2E%2E/%2e%2e/settings.py",
        "/scripts/%252e%252e/%252e%252e/settings.py",
        "/apps/..%2f..%2fetc/passwd",
        "/apps/web/../../../etc/passwd",
        "/scripts//etc/passwd",
        "/configs/templates/..\\x",
        "/configs/templates/..%5cx",
        "/scripts/web/init.sh%00.png",
    ],
)
@pytest.mark.usefixtures("secrets_around")
def test_traversal_attempts_are_refused_and_nothing_outside_the_root_is_read(
    client: Client, root: Path, url: str
) -> None:
    store("scripts/web/init.sh", INIT_SH)
    response = client.get(url)
    assert response.status_code in (400, 404)
    content = body(response)
    assert SECRET not in content
    assert b"root:" not in content


@pytest.mark.usefixtures("secrets_around")
def test_symlinks_may_not_lead_out_of_the_root(client: Client, root: Path, tmp_path: Path) -> None:
    (root / "scripts/web").mkdir(parents=True)
    (root / "scripts/outside").symlink_to(tmp_path)
    (root / "scripts/web/secret.sh").symlink_to(tmp_path / "settings.py")
    (root / "scripts/web/init.sh").write_bytes(INIT_SH)
    (root / "scripts/alias").symlink_to(root / "scripts/web")

    assert client.get("/scripts/outside/settings.py").status_code == 404
    assert client.get("/scripts/web/secret.sh").status_code == 404
    assert body(client.get("/scripts/alias/init.sh")) == INIT_SH  # inside the root: fine
    with pytest.raises(ArtifactPathError):
        store("scripts/outside/settings.py", b"overwrite")
    assert (tmp_path / "settings.py").read_bytes() == SECRET


def test_missing_files_directories_and_uploads_in_progress_are_404(
    client: Client, root: Path
) -> None:
    store("scripts/web/init.sh", INIT_SH)
    (root / "scripts/web/.init.sh.x1y2.upload").write_bytes(b"half")
    assert client.get("/scripts/web/missing.sh").status_code == 404
    assert client.get("/scripts/web").status_code == 404
    assert client.get("/scripts/web/").status_code == 404
    assert client.get("/scripts/web/.init.sh.x1y2.upload").status_code == 404


def test_other_methods_are_405_even_without_a_csrf_token(root: Path) -> None:
    store("scripts/web/init.sh", INIT_SH)
    client = Client(enforce_csrf_checks=True)
    for method in (client.post, client.put, client.delete, client.patch):
        response = method("/scripts/web/init.sh")
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
    assert (root / "scripts/web/init.sh").read_bytes() == INIT_SH


def test_with_accel_redirect_nginx_is_told_to_send_the_file(
    client: Client, root: Path, settings
) -> None:
    store("apps/web/app.tar.gz", DATA)
    settings.GITOPS = {**settings.GITOPS, "ARTIFACTS_ACCEL_REDIRECT": "/_artifacts/"}
    response = client.get("/apps/web/app.tar.gz")
    assert response.status_code == 200
    assert response.content == b""
    assert response["X-Accel-Redirect"] == "/_artifacts/apps/web/app.tar.gz"
    assert response["Content-Type"] == "application/gzip"
    assert client.get("/apps/web/missing.tar.gz").status_code == 404
    assert client.get("/apps/../settings.py").status_code == 404


class BrokenUpload:
    """A client that disconnects after the first chunk."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise ConnectionResetError("client went away")
        return b"#!/bin/sh\necho half"


def test_an_interrupted_upload_leaves_the_old_version_intact(client: Client, root: Path) -> None:
    store("scripts/web/init.sh", INIT_SH)
    with pytest.raises(ConnectionResetError):
        store_artifact("scripts/web/init.sh", BrokenUpload(), uploaded_by="ci")

    assert [p.name for p in (root / "scripts/web").iterdir()] == ["init.sh"]
    assert ReleaseArtifact.objects.get().sha256 == sha(INIT_SH)
    response = client.get("/scripts/web/init.sh")
    assert body(response) == INIT_SH
    assert response["ETag"] == f'"{sha(INIT_SH)}"'


def test_a_failed_rename_rolls_back_the_row_and_removes_the_temporary_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store("scripts/web/init.sh", INIT_SH)

    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        store("scripts/web/init.sh", b"new version")

    assert [p.name for p in (root / "scripts/web").iterdir()] == ["init.sh"]
    assert (root / "scripts/web/init.sh").read_bytes() == INIT_SH
    assert ReleaseArtifact.objects.get().sha256 == sha(INIT_SH)


def test_a_path_below_an_existing_file_is_refused(root: Path) -> None:
    store("scripts/web", b"a file, not a directory")
    with pytest.raises(ArtifactPathError, match=r"'scripts/web/init\.sh'"):
        store("scripts/web/init.sh", INIT_SH)


def test_delete_removes_the_file_and_the_row(client: Client, root: Path) -> None:
    store("scripts/web/init.sh", INIT_SH)
    assert delete_artifact("scripts/web/init.sh") is True
    assert not (root / "scripts/web/init.sh").exists()
    assert not ReleaseArtifact.objects.exists()
    assert client.get("/scripts/web/init.sh").status_code == 404
    assert delete_artifact("scripts/web/init.sh") is False


ADMIN_ADD = "/admin/syncworker/releaseartifact/add/"


def test_an_upload_through_the_admin_is_recorded_and_served(
    admin_client: Client, client: Client, root: Path
) -> None:
    package = b"\x1f\x8b package v1"
    response = admin_client.post(
        ADMIN_ADD,
        {"path": "apps/web/app.tar.gz", "file": SimpleUploadedFile("app.tar.gz", package)},
    )
    assert response.status_code == 302, response.content
    artifact = ReleaseArtifact.objects.get()
    assert (artifact.path, artifact.kind) == ("apps/web/app.tar.gz", "apps")
    assert (artifact.size, artifact.sha256) == (len(package), sha(package))
    assert artifact.uploaded_by == "admin"
    assert body(client.get("/apps/web/app.tar.gz")) == package

    v2 = b"\x1f\x8b package v2, longer"
    change = f"/admin/syncworker/releaseartifact/{artifact.pk}/change/"
    response = admin_client.post(
        change, {"file": SimpleUploadedFile("app.tar.gz", v2), "content_type": ""}
    )
    assert response.status_code == 302, response.content
    artifact.refresh_from_db()
    assert (artifact.size, artifact.sha256) == (len(v2), sha(v2))
    served = client.get("/apps/web/app.tar.gz")
    assert body(served) == v2
    assert served["ETag"] == f'"{sha(v2)}"'


@pytest.mark.usefixtures("plain_static")
def test_the_admin_shows_a_bad_path_as_a_form_error_naming_it(
    admin_client: Client, root: Path, tmp_path: Path
) -> None:
    response = admin_client.post(
        ADMIN_ADD, {"path": "scripts/../../secret", "file": SimpleUploadedFile("x", b"x")}
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["path"]
    assert "'scripts/../../secret'" in errors[0]
    assert not ReleaseArtifact.objects.exists()
    assert not (tmp_path / "secret").exists()


@pytest.mark.usefixtures("plain_static")
def test_the_admin_lists_and_shows_artifacts(admin_client: Client, root: Path) -> None:
    artifact = store("scripts/web/init.sh", INIT_SH)
    listing = admin_client.get("/admin/syncworker/releaseartifact/?kind=scripts")
    assert listing.status_code == 200
    assert sha(INIT_SH)[:12] in listing.content.decode()
    page = admin_client.get(f"/admin/syncworker/releaseartifact/{artifact.pk}/change/")
    assert page.status_code == 200
    assert sha(INIT_SH) in page.content.decode()


@pytest.fixture
def staff_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("ops", is_staff=True))
    return client


def upload(api: APIClient, path: str, data: bytes):
    return api.post(
        "/api/artifacts/",
        {"path": path, "file": SimpleUploadedFile(path.rsplit("/", 1)[-1], data)},
        format="multipart",
    )


def test_uploading_through_the_api_needs_staff(root: Path) -> None:
    assert upload(APIClient(), "scripts/web/init.sh", INIT_SH).status_code in (401, 403)
    developer = APIClient()
    developer.force_authenticate(User.objects.create_user("dev"))
    assert upload(developer, "scripts/web/init.sh", INIT_SH).status_code == 403
    assert developer.get("/api/artifacts/").status_code == 403
    assert not ReleaseArtifact.objects.exists()
    assert not (root / "scripts").exists()


def test_staff_publish_replace_list_and_delete_through_the_api(
    staff_api: APIClient, client: Client, root: Path
) -> None:
    created = upload(staff_api, "scripts/web/init.sh", INIT_SH)
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["sha256"] == sha(INIT_SH)
    assert (data["kind"], data["size"], data["uploaded_by"]) == ("scripts", len(INIT_SH), "ops")
    assert data["download_url"].endswith("/scripts/web/init.sh")
    assert body(client.get("/scripts/web/init.sh")) == INIT_SH

    replaced = upload(staff_api, "scripts/web/init.sh", b"#!/bin/sh\necho v2\n")
    assert replaced.status_code == 200
    assert replaced.json()["id"] == data["id"]

    put = staff_api.put(
        f"/api/artifacts/{data['id']}/",
        {"file": SimpleUploadedFile("init.sh", b"#!/bin/sh\necho v3\n")},
        format="multipart",
    )
    assert put.status_code == 200, put.content
    assert body(client.get("/scripts/web/init.sh")) == b"#!/bin/sh\necho v3\n"

    upload(staff_api, "apps/web/app.tar.gz", DATA)
    listed = staff_api.get("/api/artifacts/", {"kind": "apps"}).json()
    assert [item["path"] for item in listed["results"]] == ["apps/web/app.tar.gz"]

    assert staff_api.delete(f"/api/artifacts/{data['id']}/").status_code == 204
    assert not (root / "scripts/web/init.sh").exists()
    assert client.get("/scripts/web/init.sh").status_code == 404


@pytest.mark.parametrize("path", ["scripts/../x", "bin/web/init.sh", "/etc/passwd"])
def test_an_api_upload_to_a_bad_path_is_a_400_naming_it(
    staff_api: APIClient, root: Path, path: str
) -> None:
    response = upload(staff_api, path, b"x")
    assert response.status_code == 400
    assert repr(path) in response.json()["path"][0]
    assert not ReleaseArtifact.objects.exists()
