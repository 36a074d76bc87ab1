"""Secrets never shown: debug pages, logs, the token table, the admin."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
from django.test import RequestFactory
from django.views.debug import get_exception_reporter_class
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from hilapp.secrets_filter import RedactingLogFilter
from hilapp.tokens import token_issue

pytestmark = pytest.mark.django_db

# Built, not written out: the error page shows source lines, and this file's must not be the
# place where a secret is found.
DB_PW, BROKER_PW, API_KEY, AWS_KEY = (
    "-".join((w, "s3cret", "pw")) for w in ("db", "br", "sk", "aws")
)
DB_URL = f"postgres://hilapp:{DB_PW}@db.internal:5432/hilapp"
BROKER_URL = f"redis://:{BROKER_PW}@redis.internal:6379/0"


def test_debug_page_redacts_url_passwords_and_keys(settings: Any) -> None:
    settings.DEBUG = True
    settings.DATABASE_URL = DB_URL
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.HILAPP_REDIS_URL = BROKER_URL
    settings.OPENAI_API_KEY = API_KEY
    settings.AWS_SECRET_ACCESS_KEY = AWS_KEY
    request = RequestFactory().get("/boom")
    try:
        connection_string = DB_URL  # a frame variable holding a URL with a password
        raise RuntimeError(f"could not connect to {connection_string}")
    except RuntimeError:
        html = get_exception_reporter_class(request)(request, *sys.exc_info()).get_traceback_html()
    for secret in (DB_PW, BROKER_PW, API_KEY, AWS_KEY):
        assert secret not in html, secret
    assert "db.internal" in html  # the rest of the URL is still there to debug with


def test_log_lines_redact_url_passwords(caplog: Any) -> None:
    logger = logging.getLogger("hilapp.test")
    logger.addFilter(RedactingLogFilter())
    with caplog.at_level(logging.INFO, logger="hilapp.test"):
        logger.info("broker %s unreachable", BROKER_URL)
    assert BROKER_PW not in caplog.text and "redis.internal" in caplog.text


def test_tokens_are_stored_as_digests_and_work(make_user: Any) -> None:
    user = make_user("reader", "consumer")
    raw = token_issue(user)
    stored = Token.objects.get(user=user).key
    assert stored != raw and stored.startswith("h$") and raw not in stored
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert client.get("/api/v1/characters/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {stored}")  # the digest is not a token
    assert client.get("/api/v1/characters/").status_code in (401, 403)
    # A token made behind our back (drf_create_token, the admin) is stored as a digest too.
    other = Token.objects.create(user=make_user("other", "consumer"))
    assert Token.objects.get(pk=other.pk).key.startswith("h$")


def test_admin_deletes_no_audit_data(make_user: Any, client: Any) -> None:
    from review.models import ReviewEvent, Vote
    from synthesis.models import Batch, ModelCall, StatusChange

    client.force_login(make_user("root", "admin"))
    batch = Batch.objects.create(kind="characters", requested=1)
    call = ModelCall.objects.create(role="judge", provider="sim", model="gpt-4o", batch=batch)
    change = StatusChange.objects.create(model="batch", object_id=batch.pk, old="a", new="b")
    for model, obj in (
        ("synthesis/batch", batch),
        ("synthesis/modelcall", call),
        ("synthesis/statuschange", change),
    ):
        changelist = client.get(f"/admin/{model}/")
        assert changelist.status_code == 200
        assert b"delete_selected" not in changelist.content
        assert client.post(f"/admin/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
        bulk = {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
        client.post(f"/admin/{model}/", bulk)
    for path in ("review/vote", "review/reviewevent"):
        assert b"delete_selected" not in client.get(f"/admin/{path}/").content
    assert Batch.objects.count() == ModelCall.objects.count() == StatusChange.objects.count() == 1
    assert not Vote.objects.exists() and not ReviewEvent.objects.exists()
