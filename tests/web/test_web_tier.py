"""The production web tier: the ``release`` and ``web`` processes (hilapp/processes.py) with DEBUG
off — gunicorn serving pages, WhiteNoise serving hashed, compressed static files, the API docs
offline from the Swagger sidecar, and stored images through signed URLs only."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from hilapp.media import media_url
from synthesis.artifacts import save_png
from tests.factories import png_bytes
from tests.web.conftest import StartWeb

ROOT = Path(__file__).resolve().parents[2]
HASHED = re.compile(r"\.[0-9a-f]{12}\.(css|js)$")


class Links(HTMLParser):
    """Every src/href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.urls


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_gunicorn_serves_pages_hashed_static_offline_docs_and_signed_media(
    start_web: StartWeb,
) -> None:
    web = start_web()
    status, headers, body = get(f"{web}/accounts/login/")
    assert status == 200 and "gunicorn" in headers.get("Server", "")
    stylesheets = [u for u in links(body.decode()) if u.endswith(".css")]
    assert stylesheets and all(HASHED.search(u) for u in stylesheets), stylesheets
    for css in stylesheets:
        status, headers, body = get(urljoin(web, css), **{"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        assert headers.get("Content-Encoding") == "gzip"  # compressed at collectstatic
        assert "immutable" in headers["Cache-Control"]  # hashed names are cached for good

    status, _, body = get(f"{web}/api/docs/")
    assert status == 200
    html = body.decode()
    external = [u for u in links(html) + re.findall(r"""["'](https?:)?//[^"']+""", html) if u]
    assert not [u for u in external if urlsplit(u).netloc not in ("", "127.0.0.1")]
    assets = [u for u in links(html) if "drf_spectacular_sidecar" in u]
    assert any("swagger-ui-bundle" in u for u in assets), assets
    for asset in assets:
        assert get(urljoin(web, asset))[0] == 200, asset

    name, _ = save_png(png_bytes("served"), folder="frames")
    status, headers, body = get(urljoin(web, media_url(name)))
    assert (status, headers["Content-Type"], body) == (200, "image/png", png_bytes("served"))
    assert get(urljoin(web, f"/media/{name}"))[0] == 403
