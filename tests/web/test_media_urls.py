"""Media through signed, expiring URLs on local storage: what a holder of the URL gets, and what
everyone else gets (403), whatever they try."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.test import Client

from hilapp import media
from synthesis.artifacts import save_png
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "secret.txt").write_text("not media")
    name, _ = save_png(png_bytes("heron"), folder="frames")
    return name


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_signed_url_serves_the_image_privately_until_it_expires(stored: str) -> None:
    url = media.media_url(stored)
    assert urlsplit(url).path == f"/media/{stored}"
    response = Client().get(url)  # anonymous: the URL itself is the authorisation
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == png_bytes("heron")  # type: ignore[attr-defined]
    cache, max_age = response["Cache-Control"].split(", max-age=")
    assert cache == "private"
    assert 3600 - 5 <= int(max_age) <= 3600 + media.EXPIRY_STEP_S


def test_the_ttl_is_configurable(stored: str, settings: Any) -> None:
    settings.HILAPP_MEDIA_URL_TTL_S = 120
    expires = int(_query(media.media_url(stored))["exp"])
    assert 120 <= expires - time.time() <= 120 + media.EXPIRY_STEP_S


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.split("?")[0],  # no signature at all
        lambda url: url.replace("sig=", "sig=x"),  # a forged signature
        lambda url: url.replace("exp=", "exp=9"),  # a later expiry than was signed
        lambda url: url.replace("/frames/", "/templates/"),  # another file's path
    ],
    ids=["unsigned", "bad-signature", "extended", "other-path"],
)
def test_without_a_valid_signature_the_path_is_forbidden(stored: str, tamper: Any) -> None:
    response = Client().get(tamper(media.media_url(stored)))
    assert response.status_code == 403
    assert b"PNG" not in response.content


def test_an_expired_url_is_forbidden(stored: str) -> None:
    expires, signature = media.sign(stored, now=time.time() - 3 * 3600)
    response = Client().get(f"/media/{stored}?exp={expires}&sig={signature}")
    assert response.status_code == 403


@pytest.mark.parametrize(
    "name", ["../secret.txt", "frames/../../secret.txt", "./x.png", "a\x00.png", "/etc/passwd"]
)
def test_traversal_and_nul_bytes_are_refused_even_when_signed(stored: str, name: str) -> None:
    # A signature made with the real key (as if an attacker had one) still opens nothing.
    expires = int(time.time()) + 600
    signature = media._signer().signature(media._payload(name, expires))
    response = Client().get(f"/media/{quote(name)}?exp={expires}&sig={signature}")
    # 403 from the media view; 400 where the request limits refuse a NUL before any view.
    assert response.status_code in (400, 403)
    assert b"not media" not in response.content
    with pytest.raises(Exception, match="refusing to sign"):
        media.media_url(name)


def test_a_missing_file_with_a_valid_signature_is_404(stored: str) -> None:
    expires, signature = media.sign("frames/ab/nothing.png")
    response = Client().get(f"/media/frames/ab/nothing.png?exp={expires}&sig={signature}")
    assert response.status_code == 404


def test_x_accel_redirect_hands_the_file_to_nginx(stored: str, settings: Any) -> None:
    settings.HILAPP_MEDIA_X_ACCEL_PREFIX = "/protected-media/"
    response = Client().get(media.media_url(stored))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected-media/{stored}"
    assert response["Content-Type"] == "image/png"
    assert response.content == b""  # nginx sends the bytes
    assert Client().get(media.media_url(stored).split("?")[0]).status_code == 403


def test_only_get_and_head(stored: str) -> None:
    url = media.media_url(stored)
    assert Client().head(url).status_code == 200
    assert Client().post(url).status_code == 405
