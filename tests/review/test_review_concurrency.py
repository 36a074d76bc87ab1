"""Real concurrent experts on PostgreSQL: threads, each with its own database connection."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from review.models import (
    EventKind,
    ItemStatus,
    LeaseStatus,
    ReviewDecision,
    ReviewEvent,
    ReviewItem,
    ReviewLease,
    Vote,
)
from review.services import VoteRefused, review_item_open, review_queue_next, vote_cast
from review.stages import choices_for, open_seats, seat_free_q

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ITEMS = 1000


# How long before the queue was asked an item must have stayed unchanged for a "no work" answer
# to count as false: an item whose seats were all held when the queue looked can gain a free one
# a moment later (its two seated experts split), and a transaction's events are stamped just
# before it commits.
QUIET = timedelta(seconds=2)


def _work_open_for(expert: Any, stage: str, *, unchanged_since: datetime) -> list[int]:
    """Open items this expert has not voted on, with a free seat now, and on which nothing has
    happened since ``unchanged_since``: items the queue should have handed out."""
    changed = ReviewEvent.objects.filter(item=OuterRef("pk"), created_at__gte=unchanged_since)
    return list(
        ReviewItem.objects.filter(stage=stage, status=ItemStatus.OPEN)
        .exclude(votes__expert=expert)
        .filter(seat_free_q(), ~Exists(changed))
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
                asked = timezone.now()
                item = review_queue_next(expert=expert, stage=stage)
                if item is None:
                    left = _work_open_for(expert, stage, unchanged_since=asked - QUIET)
                    if left:
                        missed.append((expert.username, left))
                        return
                    if not ReviewItem.objects.filter(stage=stage, status="open").exists():
                        return
                    idle += 1
                    if idle > 20_000:
                        raise AssertionError("expert loop does not end")
                    continue
                # One snapshot: the seats held never exceed the votes that can still count.
                row = ReviewItem.objects.filter(pk=item.pk).values("lead_votes", "leases_active")[0]
                if row["leases_active"] > open_seats(row["lead_votes"]):
                    overfull.append((item.pk, row["lead_votes"], row["leases_active"]))
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
    # Every seat is one the decision still needs: nobody finds their item decided under them.
    assert not refused, refused

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
        assert 2 <= len(choices) <= 3, (item_id, choices)
        tally = Counter(choices)
        assert tally[decided[item_id]] == 2
        if len(choices) == 3:
            assert choices[0] != choices[1], "a third vote on an item already decided"
    assert not ReviewLease.objects.filter(status=LeaseStatus.ACTIVE).exists()


@pytest.mark.parametrize(("stage", "team"), [("hv1", 3), ("hv3", 4)])
def test_experts_on_a_backlog_never_look_at_an_item_that_could_no_longer_change(
    experts, decisions, stage, team
) -> None:
    """A seat is given only for a vote that can still change the outcome: two on a fresh item,
    one after a vote or a split. So every look ends in a counted vote: none refused as decided,
    no seat released because the item was decided under it, no vote beyond what the rule
    needed (a third only after a split pair, a fourth only after an HV3 three-way split)."""
    items = 150
    for n in range(items):
        review_item_open(stage=stage, subject_id=n, subject_label=f"subject {n}")
    team_experts = experts[:team]
    barrier = threading.Barrier(team)
    errors: list[BaseException] = []
    refused: Counter[str] = Counter()
    looks: Counter[int] = Counter()

    def expert_loop(expert: Any, seed: int) -> None:
        rng = random.Random(seed)
        choices = choices_for(stage)
        try:
            barrier.wait()
            for _ in range(20_000):
                item = review_queue_next(expert=expert, stage=stage)
                if item is None:
                    if not ReviewItem.objects.filter(stage=stage, status="open").exists():
                        return
                    continue  # the others hold the last seats: their votes come soon
                looks[item.pk] += 1
                choice = rng.choice(choices)
                extra = {"instruction": "fix the hands"} if choice == "correct" else {}
                try:
                    vote_cast(
                        item_id=item.pk,
                        expert=expert,
                        choice=choice,
                        idempotency_key=uuid.uuid4().hex,
                        **extra,
                    )
                except VoteRefused as exc:
                    refused[exc.code] += 1
            raise AssertionError("expert loop does not end")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=expert_loop, args=(e, 100 + i)) for i, e in enumerate(team_experts)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert not refused, refused
    assert ReviewDecision.objects.count() == items
    assert not ReviewEvent.objects.filter(
        kind=EventKind.LEASE_RELEASED, data__reason="decided"
    ).exists()
    # Every seat given ended in a vote.
    assert set(ReviewLease.objects.values_list("status", flat=True)) == {LeaseStatus.VOTED}
    votes: dict[int, list[str]] = defaultdict(list)
    for item_id, choice in Vote.objects.order_by("pk").values_list("item_id", "choice"):
        votes[item_id].append(choice)
    for item_id, cast in votes.items():
        assert looks[item_id] == len(cast)
        # No vote after a choice already had two, and no third vote after a matching pair.
        for n in range(2, len(cast)):
            assert max(Counter(cast[:n]).values()) < 2, (item_id, cast)
        assert max(Counter(cast).values()) == 2
