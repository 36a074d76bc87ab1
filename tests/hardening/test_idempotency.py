"""A reused idempotency key means "the same vote again": another payload is a 409."""

from __future__ import annotations

from typing import Any

import pytest

from review.models import Vote
from review.services import review_item_open

pytestmark = pytest.mark.django_db


def test_same_key_other_choice_is_409_and_the_first_vote_stands(api: Any) -> None:
    item = review_item_open(stage="hv1", subject_id=1)
    client = api("expert")
    assert client.get("/api/v1/review/next/", {"stage": "hv1"}).status_code == 200
    url = f"/api/v1/review/items/{item.pk}/votes/"
    first = {"choice": "approve", "comment": "fine", "idempotency_key": "k1"}
    assert client.post(url, first, format="json").status_code == 201
    assert client.post(url, first, format="json").status_code == 200  # a true retry
    for changed in ({"choice": "reject"}, {"comment": "on second thought"}):
        response = client.post(url, {**first, **changed}, format="json")
        assert response.status_code == 409
        assert "different choice" in response.json()["detail"]
    vote = Vote.objects.get()
    assert (vote.choice, vote.comment) == ("approve", "fine")
