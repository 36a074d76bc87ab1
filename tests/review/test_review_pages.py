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


def _row(body: str, stage: str) -> str:
    start = body.index(f'<tr data-stage="{stage}">')
    return body[start : body.index("</tr>", start)]


def test_home_shows_what_waits_for_me_and_start_only_where_there_is_work(
    experts, decisions
) -> None:
    hv1 = review_item_open(stage="hv1", subject_id=1)
    review_item_open(stage="hv2", subject_id=1)
    review_item_open(stage="hv2", subject_id=2)
    review_item_open(stage="audit", subject_id=7)
    # The hv1 item's two seats are held by others: nothing there for experts[0] right now.
    for other in experts[1:3]:
        review_queue_next(expert=other, stage="hv1")
    body = login(experts[0]).get("/review/").content.decode()
    assert 'id="start-hv1"' not in body and 'id="start-hv3"' not in body
    assert 'id="start-hv2"' in body and 'id="start-audit"' in body
    assert '<td class="mine">2</td>' in _row(body, "hv2")
    assert '<td class="mine">0</td>' in _row(body, "hv1")
    assert '<td class="depth">1</td>' in _row(body, "hv1")
    assert "Audit" in _row(body, "audit")
    assert 'id="votes-today">0<' in body
    # Progress today: a vote with its dwell time.
    vote_cast(
        item_id=hv1.pk, expert=experts[1], choice="approve", idempotency_key="h1", dwell_ms=4000
    )
    mine = login(experts[1]).get("/review/").content.decode()
    assert 'id="votes-today">1<' in mine and '<td class="today">1</td>' in _row(mine, "hv1")
    assert 'id="minutes-today">4<' in mine


def test_next_card_says_what_remains_and_who_holds_the_tail(experts, decisions) -> None:
    items = [review_item_open(stage="hv2", subject_id=60 + n) for n in range(3)]
    page = login(experts[0])
    first = page.get("/review/hv2/next-card/")
    assert first["X-Review-Item"] == str(items[0].pk) and first["X-Review-Remaining"] == "3"
    second = page.get(f"/review/hv2/next-card/?exclude={items[0].pk}")
    assert second["X-Review-Item"] == str(items[1].pk) and second["X-Review-Remaining"] == "2"
    # Two others hold the seats of the last item: a 204 that says so and when to look again.
    for other in experts[1:3]:
        assert review_queue_next(expert=other, stage="hv2", exclude=[i.pk for i in items[:2]])
    empty = page.get(f"/review/hv2/next-card/?exclude={items[0].pk},{items[1].pk}")
    assert empty.status_code == 204 and empty["X-Review-Held"] == "1"
    assert 0 < int(empty["X-Review-Retry-After"]) <= 601


def test_stage_page_shows_the_guidelines_and_their_version(experts) -> None:
    from review.guidelines import guideline_for

    body = login(experts[0]).get("/review/hv1/").content.decode()
    version = guideline_for("hv1").version
    assert f'data-guideline-version="{version}"' in body
    assert 'id="review-guidelines"' in body and "Plain white background" in body
    assert "<script>" not in body.split('id="review-guidelines"')[1].split("</aside>")[0]


def test_item_page_offers_revision_until_decided(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=77)
    vote_cast(item_id=item.pk, expert=experts[0], choice="approve", idempotency_key="v0")
    page = login(experts[0])
    body = page.get(f"/review/items/{item.pk}/").content.decode()
    assert 'id="revise-form"' in body and 'data-revise="reject"' in body
    resp = page.post(f"/review/items/{item.pk}/revise/", {"choice": "reject"})
    assert resp.status_code == 302
    body = page.get(f"/review/items/{item.pk}/").content.decode()
    assert 'id="my-vote">reject<' in body and "Vote changed to reject" in body
    vote_cast(item_id=item.pk, expert=experts[1], choice="reject", idempotency_key="v1")
    body = page.get(f"/review/items/{item.pk}/").content.decode()
    assert 'id="revise-form"' not in body and "(final)" in body
    page.post(f"/review/items/{item.pk}/revise/", {"choice": "approve"})
    body = page.get(f"/review/items/{item.pk}/").content.decode()
    assert "a decided item is final" in body and 'id="my-vote">reject<' in body


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
