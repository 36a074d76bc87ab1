"""HV3 manual corrections: uploads are validated, stored, and handed to the decision."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from review.models import Vote
from review.services import VoteRefused, review_item_open, review_queue_next, vote_cast

pytestmark = pytest.mark.django_db


def png(size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims 2.5 billion pixels (never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def hv3_item(experts: list[Any]) -> Any:
    item = review_item_open(stage="hv3", subject_id=77, subject_label="frame 77")
    review_queue_next(expert=experts[0], stage="hv3")
    review_queue_next(expert=experts[1], stage="hv3")
    return item


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not an image at all", "not an image"),
        (png()[:60], "truncated or corrupt"),
        (bomb_png(), "pixels"),
        (b"", "needs a corrected image"),
        (b"GIF89a" + b"\0" * 40, "not an image"),
    ],
    ids=["text", "truncated", "huge", "empty", "gif-junk"],
)
def test_bad_files_are_refused(hv3_item, experts, data, message) -> None:
    with pytest.raises(VoteRefused) as exc:
        vote_cast(
            item_id=hv3_item.pk,
            expert=experts[0],
            choice="correct",
            image=data or None,
            idempotency_key="bad",
        )
    assert exc.value.code == "invalid"
    assert message in exc.value.message
    assert not Vote.objects.exists()


def test_too_many_bytes_is_refused(hv3_item, experts, monkeypatch) -> None:
    import hilapp.imaging as imaging

    monkeypatch.setattr(imaging, "MAX_UPLOAD_BYTES", 100)
    monkeypatch.setattr(
        imaging.validate_image_upload,
        "__kwdefaults__",
        {"max_bytes": 100, "max_pixels": 4096 * 4096},
    )
    with pytest.raises(VoteRefused, match="limit is 100 bytes"):
        vote_cast(
            item_id=hv3_item.pk,
            expert=experts[0],
            choice="correct",
            image=png(),
            idempotency_key="big",
        )


def test_good_image_is_stored_and_decides_the_correction(hv3_item, experts, decisions) -> None:
    image = png()
    vote_cast(
        item_id=hv3_item.pk, expert=experts[0], choice="correct", image=image, idempotency_key="g1"
    )
    outcome = vote_cast(
        item_id=hv3_item.pk,
        expert=experts[1],
        choice="correct",
        instruction="brighten the sky",
        idempotency_key="g2",
    )
    assert outcome.decided
    (decision,) = decisions
    assert decision.image_name and decision.image_name.endswith(".png")
    with default_storage.open(decision.image_name, "rb") as fh:
        assert fh.read() == image
    assert decision.instruction == "brighten the sky"


def test_upload_through_the_api(hv3_item, experts) -> None:
    client = APIClient()
    client.force_authenticate(experts[0])
    url = f"/api/v1/review/items/{hv3_item.pk}/votes/"
    bad = SimpleUploadedFile("frame.png", b"not a png", content_type="image/png")
    r = client.post(
        url, {"choice": "correct", "idempotency_key": "u1", "image": bad}, format="multipart"
    )
    assert r.status_code == 400 and "refused" in r.json()["detail"]
    good = SimpleUploadedFile("frame.png", png(), content_type="image/png")
    r = client.post(
        url, {"choice": "correct", "idempotency_key": "u2", "image": good}, format="multipart"
    )
    assert r.status_code == 201, r.json()
    other = APIClient()
    other.force_authenticate(experts[1])
    r = other.post(
        url, {"choice": "discard", "idempotency_key": "u3", "instruction": "x"}, format="json"
    )
    assert r.status_code == 400 and "only with a manual correction" in r.json()["detail"]
