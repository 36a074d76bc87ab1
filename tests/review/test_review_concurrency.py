"""Real concurrent experts on PostgreSQL: threads, each with its own database connection."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Greatest

from review.models import ItemStatus, LeaseStatus, ReviewDecision, ReviewItem, ReviewLease, Vote
from review.services import VoteRefused, review_item_open, review_queue_next, vote_cast
from review.stages import panel_size

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ITEMS = 1000


def _work_open_for(expert: Any, stage: str) -> list[int]:
    """Open items this expert has not voted on and that have a free seat, right now."""
    return list(
        ReviewItem.objects.filter(stage=stage, status=ItemStatus.OPEN)
        .exclude(votes__expert=expert)
        .filter(leases_active__lt=Greatest(Value(panel_size()) - F("votes_count"), Value(1)))
        .values_list("pk", flat=True)[:5]
    )


def test_five_experts_decide_a_thousand_items_at_once(experts, decisions) -> None:
    assert connection.vendor == "postgresql"  # marked postgres: deselected elsewhere
    stage = "hv1"
    for n in range(ITEMS):
        review_item_open(stage=stage, subject_id=n, subject_label=f"character {n}")
    barrier = threading.Barrier(len(experts))
    errors: list[BaseException] = []
    missed: list[tuple[str, list[int]]] = []
    overfull: list[tuple[int, int, int]] = []
    refused: Counter[str] = Counter()

    def expert_loop(expert: Any, seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            idle = 0
            while True:
                item = review_queue_next(expert=expert, stage=stage)
                if item is None:
                    left = _work_open_for(expert, stage)
                    if left:
                        missed.append((expert.username, left))
                    if not ReviewItem.objects.filter(stage=stage, status="open").exists():
                        return
                    idle += 1
                    if idle > 20_000:
                        raise AssertionError("expert loop does not end")
                    continue
                # One snapshot: the votes cast plus the seats held never exceed the panel.
                row = ReviewItem.objects.filter(pk=item.pk).values("votes_count", "leases_active")[
                    0
                ]
                if row["votes_count"] + row["leases_active"] > panel_size():
                    overfull.append((item.pk, row["votes_count"], row["leases_active"]))
                try:
                    vote_cast(
                        item_id=item.pk,
                        expert=expert,
                        choice=rng.choice(["approve", "reject"]),
                        idempotency_key=uuid.uuid4().hex,
                    )
                except VoteRefused as exc:
                    refused[exc.code] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=expert_loop, args=(e, i)) for i, e in enumerate(experts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert not missed, f"'no work' while work was open: {missed[:5]}"
    assert not overfull, overfull[:5]
    # Only an expert whose seat was overtaken by a two-vote decision is refused.
    assert set(refused) <= {"decided"}

    # Every item decided exactly once, by its second matching vote.
    assert ReviewItem.objects.filter(status=ItemStatus.DECIDED).count() == ITEMS
    assert ReviewDecision.objects.count() == ITEMS
    assert len(decisions) == ITEMS
    assert len({d.item_id for d in decisions}) == ITEMS
    votes: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for item_id, choice, expert_id in Vote.objects.order_by("pk").values_list(
        "item_id", "choice", "expert_id"
    ):
        votes[item_id].append((choice, expert_id))
    decided = dict(ReviewItem.objects.values_list("pk", "decided_choice"))
    for item_id, cast in votes.items():
        experts_on_item = [e for _, e in cast]
        assert len(experts_on_item) == len(set(experts_on_item)), "an expert voted twice"
        choices = [c for c, _ in cast]
        assert 2 <= len(choices) <= panel_size(), (item_id, choices)
        tally = Counter(choices)
        assert tally[decided[item_id]] == 2
        if len(choices) == 3:
            assert choices[0] != choices[1], "a third vote on an item already decided"
    assert not ReviewLease.objects.filter(status=LeaseStatus.ACTIVE).exists()
