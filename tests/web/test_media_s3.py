"""Media in an S3-compatible bucket (a local moto server): what the pipeline writes and what
experts upload land in the bucket, never on local disk, and their URLs are presigned."""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from hilapp.celery import app as celery_app
from hilapp.media import StorageUnavailable, media_url
from review.services import review_item_open, review_queue_next, vote_cast
from synthesis.artifacts import save_png
from synthesis.models import Character, GateAttempt
from synthesis.services.characters import batch_launch_characters
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.states import CharacterStatus
from tests.factories import png_bytes
from tests.web.s3_media import s3_default, storages_from_env

pytestmark = pytest.mark.django_db

FAST = {"sim": {"faults": {}, "latency_ms": 0}}


class Bucket:
    def __init__(self, local_s3: Any, env: dict[str, str]) -> None:
        self.env = env
        self.name = env["AWS_STORAGE_BUCKET_NAME"]
        self.client = local_s3.client()

    def stored(self) -> set[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return {item["Key"] for item in listing.get("Contents", [])}

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body


@pytest.fixture
def bucket(
    settings: Any, local_s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Bucket]:
    env = local_s3.bucket()
    settings.MEDIA_ROOT = tmp_path / "local-media"  # must stay empty
    settings.STORAGES = {**settings.STORAGES, "default": s3_default(env, monkeypatch)}
    yield Bucket(local_s3, env)
    assert not settings.MEDIA_ROOT.exists() or not any(settings.MEDIA_ROOT.rglob("*"))


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def unsigned_status(url: str) -> int:
    """What the same object URL without its signature gets (the bucket is private)."""
    try:
        return fetch(url.split("?")[0])[0]
    except urllib.error.HTTPError as error:
        return error.code


def assert_presigned(url: str, endpoint: str, ttl: int = 3600) -> None:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == endpoint
    assert query["X-Amz-Expires"] == [str(ttl)] and query["X-Amz-Signature"]


def test_settings_choose_the_presigning_s3_storage(local_s3: Any, monkeypatch: Any) -> None:
    env = local_s3.bucket()
    default = storages_from_env(env, monkeypatch)["default"]
    assert default["BACKEND"] == "hilapp.s3.S3MediaStorage"
    options = default["OPTIONS"]
    assert options["bucket_name"] == env["AWS_STORAGE_BUCKET_NAME"]
    assert options["endpoint_url"] == env["AWS_S3_ENDPOINT_URL"]
    assert options["querystring_auth"] is True and options["querystring_expire"] == 3600


def test_pipeline_images_land_in_the_bucket_with_presigned_urls(
    bucket: Bucket, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.HILAPP_TEMPLATE_SIZE = 64
    settings.HILAPP_RETRY_BASE_S = 0
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            batch_launch_characters(count=3, seed=2)
    finally:
        celery_app.conf.task_always_eager = False
    templates = list(Character.objects.exclude(template="").values_list("template", "status"))
    assert templates and any(s == CharacterStatus.PENDING_HV1 for _, s in templates)
    assert {name for name, _ in templates} <= bucket.stored()
    for name, _ in templates:
        url = media_url(name)
        assert_presigned(url, bucket.env["AWS_S3_ENDPOINT_URL"])
        status, body = fetch(url)
        assert status == 200 and body == bucket.read(name) and body[:4] == b"\x89PNG"
        assert unsigned_status(url) == 403


def test_hv3_uploads_land_in_the_bucket(bucket: Bucket, make_user: Any) -> None:
    expert, admin_user = make_user("s3-expert", "expert"), make_user("s3-admin", "admin")
    item = review_item_open(stage="hv3", subject_id=7, subject_label="frame 7")
    review_queue_next(expert=expert, stage="hv3")
    image = png_bytes("correction", size=40)
    vote_cast(item_id=item.pk, expert=expert, choice="correct", image=image, idempotency_key="s3")
    (key,) = {k for k in bucket.stored() if k.startswith("review/corrections/")}
    assert bucket.read(key) == image
    admin = APIClient()
    admin.force_authenticate(admin_user)
    votes = admin.get(f"/api/v1/review/items/{item.pk}/").json()["votes"]
    url = votes[0]["image_url"]
    assert_presigned(url, bucket.env["AWS_S3_ENDPOINT_URL"])
    assert fetch(url) == (200, image)


def test_urls_are_signed_for_the_public_endpoint_and_the_ttl(
    local_s3: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_s3.bucket()
    public = f"http://localhost:{local_s3.port}"  # the same server under the browsers' name
    env.update(AWS_S3_PUBLIC_ENDPOINT_URL=public, HILAPP_MEDIA_URL_TTL_S="120")
    settings.STORAGES = {**settings.STORAGES, "default": s3_default(env, monkeypatch)}
    name, _ = save_png(png_bytes("public"), folder="frames")
    assert name in Bucket(local_s3, env).stored()  # written through the internal endpoint
    url = media_url(name)
    assert_presigned(url, public, ttl=120)
    assert fetch(url) == (200, png_bytes("public"))


class HangingUp:
    """An endpoint that accepts each connection and closes it at once: a bucket that is down."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by close()
            while True:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def bucket_down() -> Iterator[HangingUp]:
    down = HangingUp()
    yield down
    down.close()


def test_a_bucket_that_cannot_be_reached_is_tried_max_attempts_times_then_named(
    local_s3: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, bucket_down: HangingUp
) -> None:
    env = {**local_s3.bucket(), "AWS_S3_ENDPOINT_URL": bucket_down.url, "AWS_MAX_ATTEMPTS": "3"}
    settings.STORAGES = {**settings.STORAGES, "default": s3_default(env, monkeypatch)}
    with pytest.raises(StorageUnavailable) as raised:
        save_png(png_bytes("lost?"), folder="templates")
    message = str(raised.value)
    assert env["AWS_STORAGE_BUCKET_NAME"] in message and bucket_down.url in message, message
    assert "after 3 attempts" in message
    assert bucket_down.connections == 3  # botocore's retries, as configured
    assert not Bucket(local_s3, env).stored()


def test_a_bucket_outage_during_a_batch_loses_no_character(
    local_s3: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    bucket_down: HangingUp,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = local_s3.bucket()
    up = s3_default(env, monkeypatch)
    down = s3_default(
        {**env, "AWS_S3_ENDPOINT_URL": bucket_down.url, "AWS_MAX_ATTEMPTS": "1"}, monkeypatch
    )
    settings.HILAPP_TEMPLATE_SIZE = 64
    settings.STORAGES = {**settings.STORAGES, "default": down}
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            batch = batch_launch_characters(count=3, seed=2, params=FAST)
        # Each character's first render was made but could not be stored: it waits, unclaimed.
        characters = Character.objects.filter(batch=batch)
        assert set(characters.values_list("status", flat=True)) == {CharacterStatus.RENDERING}
        assert not GateAttempt.objects.filter(lease_until__isnull=False).exists()
        assert "step left for the reconciler" in caplog.text and bucket_down.url in caplog.text

        settings.STORAGES = {**settings.STORAGES, "default": up}  # the bucket is back
        characters.update(lease_until=timezone.now() - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert reconcile_stuck_work()["character_gate"] == 3
    finally:
        celery_app.conf.task_always_eager = False
    assert set(characters.values_list("status", flat=True)) == {CharacterStatus.PENDING_HV1}
    assert set(characters.values_list("template", flat=True)) <= Bucket(local_s3, env).stored()
