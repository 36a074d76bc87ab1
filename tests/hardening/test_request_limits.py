"""One place for request limits (hilapp.limits): sizes, JSON depth, UTF-8, NUL, huge numbers."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from hilapp.tokens import token_issue
from review.models import Vote
from review.services import review_item_open
from tests.hardening.conftest import nothing_created

pytestmark = pytest.mark.django_db


class CountingBody(io.RawIOBase):
    """A request body of ``size`` bytes that is made as it is read, and counts what was read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


def test_a_400_mb_upload_is_refused_before_a_byte_is_read(make_user: Any) -> None:
    token = token_issue(make_user("uploader", "expert"))
    item = review_item_open(stage="hv3", subject_id=1)
    body = CountingBody(400 * 1024 * 1024)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/review/items/{item.pk}/votes/",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "multipart/form-data; boundary=xyz",
        "CONTENT_LENGTH": str(body.size),
        "HTTP_AUTHORIZATION": f"Token {token}",
    }
    statuses: list[str] = []
    # As Django's test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        WSGIHandler()(environ, lambda status, headers: statuses.append(status))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert statuses[0].startswith("413")
    assert body.read_bytes == 0
    assert not Vote.objects.exists()


def test_a_json_body_over_the_limit_is_413(api: Any, settings: Any) -> None:
    settings.HILAPP_MAX_BODY_BYTES = 10_000
    response = api("admin").post(
        "/api/v1/batches/", {"kind": "characters", "count": 2, "note": "x" * 20_000}, format="json"
    )
    assert response.status_code == 413
    assert nothing_created()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" * 50 + b"]" * 50, "application/json"),  # deeper than HILAPP_MAX_JSON_DEPTH
        (b'{"kind": "characters", "count": 2, "params": {"g": "\\u0000"}}', "application/json"),
        (b'{"kind": "characters\xff\xfe", "count": 2}', "application/json"),  # not UTF-8
        (b"kind=characters&count=2%00", "application/x-www-form-urlencoded"),
        (b"kind=characters%ff&count=2", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_bodies_are_400(api: Any, body: bytes, content_type: str) -> None:
    response = api("admin").generic("POST", "/api/v1/batches/", body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert nothing_created()


def test_a_deep_body_is_400_on_the_pages_too(make_user: Any, client: Any) -> None:
    client.force_login(make_user("boss", "admin"))
    response = client.generic(
        "POST", "/synthesis/batches/", b"[" * 5000, content_type="application/json"
    )
    assert response.status_code == 400
    assert nothing_created()


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/characters/?cid=%00",
        "/api/v1/characters/?cid=%ff",
        "/api/v1/characters/?updated_since=9999-12-31T23:59:59-23:59",
        "/api/v1/characters/?updated_since=0001-01-01T00:00:00%2B23:59",
        "/api/v1/stories/?updated_since=10000-01-01T00:00:00Z",
        "/api/v1/frames/?story=1e400",
        "/api/v1/frames/?story=99999999999999999999",
        "/api/v1/frames/?page_size=1.5",
        "/api/v1/frames/?page_size=abc",
        "/api/v1/frames/?page_size=501",
        "/api/v1/review/agreement/?days=1000000000000000000000",
        "/api/v1/review/next/?stage=hv1&exclude=99999999999999999999999",
    ],
)
def test_bad_query_values_are_400(api: Any, url: str) -> None:
    role = "expert" if "/review/next/" in url else "admin"
    assert api(role).get(url).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/characters/99999999999999999999/",
        "/api/v1/frames/123456789012345678901234567890/",
        "/api/v1/batches/99999999999999999999/",
        "/api/v1/exports/99999999999999999999/",
        "/api/v1/statistics/no.such.plot/",
    ],
)
def test_huge_or_odd_ids_are_404(api: Any, url: str) -> None:
    assert api("admin").get(url).status_code == 404


def test_overlong_export_file_path_is_a_4xx(api: Any) -> None:
    from synthesis.models import ExportJob

    job = ExportJob.objects.create(status="done", out_dir="/tmp")
    response = api("admin").get(f"/api/v1/exports/{job.pk}/files/", {"path": "a" * 5000})
    assert response.status_code == 400
    response = api("admin").get(f"/api/v1/exports/{job.pk}/files/", {"path": "b" * 1000})
    assert response.status_code == 404
