"""Server-rendered review pages: who may see them, and that they stay blind."""

from __future__ import annotations

import pytest
from django.test import Client

from review.services import review_item_open, review_queue_next, vote_cast

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_home_shows_depths_and_start_buttons(experts) -> None:
    review_item_open(stage="hv1", subject_id=1)
    review_item_open(stage="hv2", subject_id=1)
    review_item_open(stage="hv2", subject_id=2)
    body = login(experts[0]).get("/review/").content.decode()
    assert 'id="start-hv1"' in body and 'id="start-hv3"' in body
    assert 'id="votes-today">0<' in body


def test_pages_need_an_expert(consumer, experts) -> None:
    assert Client().get("/review/hv1/").status_code == 302  # to the login page
    assert login(consumer).get("/review/hv1/").status_code == 403
    assert login(consumer).get("/review/").status_code == 403
    assert login(experts[0]).get("/review/hv1/").status_code == 200
    assert login(experts[0]).get("/review/hv7/").status_code == 404


def test_next_card_fragment_and_blind_item_page(experts, admin_user, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=5, subject_label="Heron the archivist")
    first = login(experts[0])
    resp = first.get("/review/hv1/next-card/")
    assert resp.status_code == 200 and resp["X-Review-Item"] == str(item.pk)
    assert "Heron the archivist" in resp.content.decode()
    assert first.get(f"/review/hv1/next-card/?exclude={item.pk}").status_code == 204
    vote_cast(
        item_id=item.pk,
        expert=experts[0],
        choice="reject",
        comment="too dark",
        idempotency_key="p1",
    )
    second = login(experts[1])
    card = second.get("/review/hv1/next-card/").content.decode()
    page = second.get(f"/review/items/{item.pk}/").content.decode()
    for body in (card, page):
        assert (
            "too dark" not in body and experts[0].username not in body and "vote-list" not in body
        )
    admin_page = login(admin_user).get(f"/review/items/{item.pk}/").content.decode()
    assert "too dark" in admin_page and "vote-list" in admin_page


def test_agreement_page(experts, decisions) -> None:
    item = review_item_open(stage="hv2", subject_id=9)
    for n, e in enumerate(experts[:2]):
        review_queue_next(expert=e, stage="hv2")
        vote_cast(item_id=item.pk, expert=e, choice="approve", idempotency_key=f"ag{n}")
    body = login(experts[0]).get("/review/agreement/").content.decode()
    assert "Fleiss" in body and experts[0].username in body and experts[1].username not in body
