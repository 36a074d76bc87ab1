"""The review REST API: roles, blind votes, clear 400/409 answers, token auth."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from hilapp.tokens import token_issue
from review.models import Vote
from review.services import review_item_open, review_queue_next, vote_cast

pytestmark = pytest.mark.django_db
BASE = "/api/v1/review"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_next_gives_an_item_then_204(experts) -> None:
    item = review_item_open(stage="hv1", subject_id=1, subject_label="Otter")
    client = client_for(experts[0])
    resp = client.get(f"{BASE}/next/", {"stage": "hv1"})
    assert resp.status_code == 200
    assert resp.json()["id"] == item.pk
    assert [c["value"] for c in resp.json()["choices"]] == ["approve", "reject"]
    resp = client.get(f"{BASE}/next/", {"stage": "hv1", "exclude": str(item.pk)})
    assert resp.status_code == 204
    assert client.get(f"{BASE}/next/", {"stage": "hv9"}).status_code == 400


def test_vote_flow_and_clear_errors(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=2)
    a, b, c = (client_for(e) for e in experts[:3])
    for cl in (a, b):
        assert cl.get(f"{BASE}/next/", {"stage": "hv1"}).json()["id"] == item.pk
    # Two matching votes can decide a fresh item: it seats two experts, not three.
    assert c.get(f"{BASE}/next/", {"stage": "hv1"}).status_code == 204
    url = f"{BASE}/items/{item.pk}/votes/"
    r = a.post(url, {"choice": "approve", "comment": "ok", "idempotency_key": "a1"}, format="json")
    assert r.status_code == 201 and r.json()["decided"] is False
    assert (
        a.post(
            url, {"choice": "approve", "comment": "ok", "idempotency_key": "a1"}, format="json"
        ).status_code
        == 200
    )
    r = a.post(url, {"choice": "reject", "idempotency_key": "a2"}, format="json")
    assert r.status_code == 409 and r.json()["code"] == "already_voted"
    r = b.post(url, {"choice": "maybe", "idempotency_key": "b0"}, format="json")
    assert r.status_code == 400 and "not a choice of hv1" in r.json()["detail"]
    r = b.post(url, {"choice": "approve"}, format="json")
    assert r.status_code == 400 and "idempotency_key" in r.json()
    r = b.post(url, {"choice": "approve", "idempotency_key": "b1"}, format="json")
    assert r.status_code == 201 and r.json()["decision_choice"] == "approve"
    r = c.post(url, {"choice": "reject", "idempotency_key": "c1"}, format="json")
    assert r.status_code == 409 and "already decided (approve)" in r.json()["detail"]
    missing = a.post(f"{BASE}/items/999999/votes/", {"choice": "approve", "idempotency_key": "x"})
    assert missing.status_code == 404


def test_votes_are_blind_to_experts_and_visible_to_admins(experts, admin_user) -> None:
    item = review_item_open(stage="hv2", subject_id=3)
    review_queue_next(expert=experts[0], stage="hv2")
    vote_cast(
        item_id=item.pk, expert=experts[0], choice="reject", comment="secret", idempotency_key="k"
    )
    seen = client_for(experts[1]).get(f"{BASE}/items/{item.pk}/").json()
    assert "votes" not in seen and "votes_count" not in seen and "secret" not in str(seen)
    assert seen["my_vote"] is None
    mine = client_for(experts[0]).get(f"{BASE}/items/{item.pk}/").json()
    assert mine["my_vote"] == "reject" and "votes" not in mine
    full = client_for(admin_user).get(f"{BASE}/items/{item.pk}/").json()
    assert [v["choice"] for v in full["votes"]] == ["reject"]
    assert full["votes"][0]["comment"] == "secret"
    assert "vote" in [e["kind"] for e in full["events"]]


def test_roles(experts, admin_user, consumer) -> None:
    item = review_item_open(stage="hv1", subject_id=4)
    anon = APIClient()
    assert anon.get(f"{BASE}/next/", {"stage": "hv1"}).status_code in (401, 403)
    for user in (consumer, admin_user):
        cl = client_for(user)
        assert cl.get(f"{BASE}/next/", {"stage": "hv1"}).status_code == 403
        vote = cl.post(
            f"{BASE}/items/{item.pk}/votes/", {"choice": "approve", "idempotency_key": "z"}
        )
        assert vote.status_code == 403
    assert client_for(consumer).get(f"{BASE}/items/{item.pk}/").status_code == 403
    assert client_for(consumer).get(f"{BASE}/agreement/").status_code == 403
    assert client_for(admin_user).get(f"{BASE}/items/{item.pk}/").status_code == 200
    assert client_for(admin_user).get(f"{BASE}/agreement/").status_code == 200


def test_token_auth(experts) -> None:
    review_item_open(stage="hv1", subject_id=5)
    token = token_issue(experts[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"{BASE}/next/", {"stage": "hv1"}).status_code == 200


def test_skip_releases_the_seat(experts) -> None:
    item = review_item_open(stage="hv1", subject_id=6)
    cl = client_for(experts[0])
    cl.get(f"{BASE}/next/", {"stage": "hv1"})
    assert cl.post(f"{BASE}/items/{item.pk}/release/").status_code == 204
    assert cl.get(f"{BASE}/next/", {"stage": "hv1"}).status_code == 204


def test_agreement_endpoint(experts, decisions, admin_user) -> None:
    for n in range(3):
        item = review_item_open(stage="hv1", subject_id=100 + n)
        for e, choice in zip(experts[:3], ["approve", "reject", "approve"], strict=True):
            review_queue_next(expert=e, stage="hv1")
            if (
                item.pk
                and not vote_cast(
                    item_id=item.pk, expert=e, choice=choice, idempotency_key=f"{n}-{e.pk}"
                ).decided
            ):
                continue
            break
    data = client_for(admin_user).get(f"{BASE}/agreement/").json()
    hv1 = next(s for s in data["stages"] if s["stage"] == "hv1")
    assert hv1["items"] == 3 and hv1["votes"] == 9
    assert hv1["pairwise"] == pytest.approx(1 / 3)
    assert {e["username"] for e in data["experts"]} == {e.username for e in experts[:3]}
    own = client_for(experts[1]).get(f"{BASE}/agreement/").json()
    assert [e["username"] for e in own["experts"]] == [experts[1].username]
    assert own["experts"][0]["agreement_with_outcome"] == 0.0


def test_dwell_and_guideline_version_are_kept_and_shown_to_admins_only(
    experts, admin_user, decisions
) -> None:
    item = review_item_open(stage="hv1", subject_id=41)
    a = client_for(experts[0])
    url = f"{BASE}/items/{item.pk}/votes/"
    version = a.get(f"{BASE}/guidelines/", {"stage": "hv1"}).json()["version"]
    assert len(version) == 12
    for bad in ({"dwell_ms": -1}, {"dwell_ms": 3_600_001}, {"guideline_version": "<b>"}):
        r = a.post(url, {"choice": "approve", "idempotency_key": "bad", **bad}, format="json")
        assert r.status_code == 400, bad
    assert not Vote.objects.exists()
    r = a.post(
        url,
        {
            "choice": "approve",
            "idempotency_key": "d1",
            "dwell_ms": 2500,
            "guideline_version": version,
        },
        format="json",
    )
    assert r.status_code == 201
    vote = Vote.objects.get()
    assert (vote.dwell_ms, vote.guideline_version) == (2500, version)
    other = client_for(experts[1]).get(f"{BASE}/items/{item.pk}/").json()
    assert "2500" not in str(other) and version not in str(other)
    full = client_for(admin_user).get(f"{BASE}/items/{item.pk}/").json()
    assert full["votes"][0]["dwell_ms"] == 2500
    assert full["votes"][0]["guideline_version"] == version


def test_an_expert_revises_a_vote_until_the_item_is_decided(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=42)
    a, b = client_for(experts[0]), client_for(experts[1])
    mine = f"{BASE}/items/{item.pk}/my-vote/"
    assert a.put(mine, {"choice": "reject"}, format="json").json()["code"] == "not_voted"
    a.post(f"{BASE}/items/{item.pk}/votes/", {"choice": "approve", "idempotency_key": "r1"})
    b.post(f"{BASE}/items/{item.pk}/votes/", {"choice": "reject", "idempotency_key": "r2"})
    r = a.put(mine, {"choice": "maybe"}, format="json")
    assert r.status_code == 400
    # a changes approve -> reject: reject now has two votes and decides, by a's revised vote.
    r = a.put(mine, {"choice": "reject", "dwell_ms": 1000}, format="json")
    assert r.status_code == 200 and r.json()["decided"] and r.json()["decision_choice"] == "reject"
    item.refresh_from_db()
    assert item.status == "decided" and item.decided_choice == "reject"
    assert [d.choice for d in decisions] == ["reject"]
    vote = Vote.objects.get(item=item, expert=experts[0])
    assert vote.choice == "reject" and vote.revisions == 1 and vote.dwell_ms == 1000
    # A decided item is final.
    r = b.put(mine.replace(str(item.pk), str(item.pk)), {"choice": "approve"}, format="json")
    assert r.status_code == 409 and r.json()["code"] == "decided"
    assert Vote.objects.get(item=item, expert=experts[1]).choice == "reject"


def test_next_never_hands_back_an_excluded_or_voted_item(experts) -> None:
    items = [review_item_open(stage="hv2", subject_id=500 + n) for n in range(3)]
    a = client_for(experts[0])
    first = a.get(f"{BASE}/next/", {"stage": "hv2"}).json()["id"]
    # The page still holds `first` (its vote is in the undo window): excluded, never returned.
    second = a.get(f"{BASE}/next/", {"stage": "hv2", "exclude": str(first)}).json()["id"]
    third = a.get(f"{BASE}/next/", {"stage": "hv2", "exclude": f"{first},{second}"}).json()["id"]
    assert sorted([first, second, third]) == [i.pk for i in items]
    assert (
        a.get(f"{BASE}/next/", {"stage": "hv2", "exclude": f"{first},{second},{third}"}).status_code
        == 204
    )
    too_many = ",".join(str(n) for n in range(501))
    assert a.get(f"{BASE}/next/", {"stage": "hv2", "exclude": too_many}).status_code == 400
