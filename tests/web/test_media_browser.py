"""In Chromium, with DEBUG off: a review page's images load through signed URLs — Django-checked
local ones and presigned S3 ones — and the same paths without a signature are refused."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from review.services import review_item_open
from synthesis.states import CharacterStatus
from tests.factories import CharacterFactory
from tests.web.conftest import StartWeb
from tests.web.s3_media import s3_default

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The pages come from the production web tier (gunicorn, DEBUG off: tests/web/conftest.py).
# Playwright's sync API runs an event loop in the test thread; Django would refuse ORM calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def open_review_page(browser: Any, base: str, make_user: Any) -> tuple[Any, list[str]]:
    """An expert's HV1 page for a new character; the page and its image URLs, all loaded."""
    expert = make_user(f"viewer{CharacterFactory._meta.next_sequence()}", "expert")
    character = CharacterFactory(status=CharacterStatus.PENDING_HV1, name="Signed Heron")
    item = review_item_open(stage="hv1", subject_id=character.pk, subject_label=character.name)
    # Logged in through a session in the shared database (the web process uses the production
    # password hasher, the tests a fast one, so the login form is not the way in here).
    client = Client()
    client.force_login(expert)
    context = browser.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
    )
    page = context.new_page()
    page.goto(f"{base}/review/items/{item.pk}/")
    page.wait_for_load_state("networkidle")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.currentSrc, w: e.naturalWidth, done: e.complete}))"
    )
    assert images, "the HV1 page shows the character's template"
    broken = [i["src"] for i in images if not (i["done"] and i["w"] > 0)]
    assert not broken, broken
    return page, [i["src"] for i in images]


def test_local_signed_images_load_and_unsigned_paths_are_refused(
    browser: Any, start_web: StartWeb, make_user: Any
) -> None:
    web = start_web()
    page, sources = open_review_page(browser, web, make_user)
    for src in sources:
        assert src.startswith(f"{web}/media/") and "sig=" in src
        assert page.request.get(src.split("?")[0]).status == 403  # with the session's cookies


def test_presigned_s3_images_load_and_unsigned_paths_are_refused(
    browser: Any,
    start_web: StartWeb,
    make_user: Any,
    local_s3: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = local_s3.bucket()
    web = start_web(**bucket)  # pages signed by the web process, for the bucket
    settings.STORAGES = {**settings.STORAGES, "default": s3_default(bucket, monkeypatch)}
    page, sources = open_review_page(browser, web, make_user)
    for src in sources:
        assert urlsplit(src).netloc == urlsplit(local_s3.endpoint).netloc
        assert "X-Amz-Signature=" in src
        assert page.request.get(src.split("?")[0]).status == 403  # the object is private
