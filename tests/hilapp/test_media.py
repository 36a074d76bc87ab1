"""Stored images are served with DEBUG off too (the filesystem storage has no other server)."""

from typing import Any

import pytest
from django.test import Client

from hilapp.imaging import to_png
from synthesis.artifacts import save_png, url_of


@pytest.mark.django_db
def test_media_is_served_without_debug(settings: Any) -> None:
    from PIL import Image

    settings.DEBUG = False
    png = to_png(Image.new("RGB", (8, 8), (10, 200, 30)))
    name, _ = save_png(png, folder="frame")
    response = Client().get(url_of(name) if url_of(name).startswith("/") else "/" + url_of(name))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == png
    assert "immutable" in response["Cache-Control"]
