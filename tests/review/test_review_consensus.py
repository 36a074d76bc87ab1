"""The consensus rules, one by one (review.services on the default database)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from review.models import EventKind, ItemStatus, ReviewDecision, ReviewEvent, ReviewItem, Vote
from review.services import VoteRefused, review_item_open, review_queue_next, vote_cast

pytestmark = pytest.mark.django_db


def vote(item: ReviewItem, expert: Any, choice: str, **kw: Any):
    assert review_queue_next(expert=expert, stage=item.stage) == item
    return vote_cast(
        item_id=item.pk, expert=expert, choice=choice, idempotency_key=uuid.uuid4().hex, **kw
    )


def test_open_is_idempotent_per_stage_and_subject() -> None:
    a = review_item_open(stage="hv1", subject_id=7, subject_label="Mole")
    assert review_item_open(stage="hv1", subject_id=7) == a
    assert review_item_open(stage="hv2", subject_id=7) != a
    assert ReviewItem.objects.count() == 2


def test_two_matching_votes_decide(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=1)
    first = vote(item, experts[0], "approve", comment="clean lines")
    assert not first.decided
    second = vote(item, experts[1], "approve")
    assert second.decided and second.decision_choice == "approve"
    item.refresh_from_db()
    assert item.status == ItemStatus.DECIDED and item.decided_choice == "approve"
    assert [(d.item_id, d.choice, d.subject_id) for d in decisions] == [(item.pk, "approve", 1)]
    assert "clean lines" in decisions[0].comment_summary


def test_split_goes_to_the_third_expert(experts, decisions) -> None:
    item = review_item_open(stage="hv2", subject_id=2)
    assert not vote(item, experts[0], "approve").decided
    assert not vote(item, experts[1], "reject").decided
    third = vote(item, experts[2], "reject")
    assert third.decided and third.decision_choice == "reject"
    assert [d.choice for d in decisions] == ["reject"]


def test_hv3_three_way_split_draws_a_fourth_expert(experts, decisions) -> None:
    item = review_item_open(stage="hv3", subject_id=3)
    vote(item, experts[0], "correct", instruction="fix the left hand")
    vote(item, experts[1], "regenerate")
    vote(item, experts[2], "discard")
    item.refresh_from_db()
    assert item.status == ItemStatus.OPEN and item.votes_count == 3
    # The panel voted; one more seat opens, for one expert only.
    assert review_queue_next(expert=experts[3], stage="hv3") == item
    assert review_queue_next(expert=experts[4], stage="hv3") is None
    fourth = vote_cast(
        item_id=item.pk,
        expert=experts[3],
        choice="correct",
        instruction="and the sleeve",
        idempotency_key="k4",
    )
    assert fourth.decided and fourth.decision_choice == "correct"
    (decision,) = decisions
    assert decision.instruction == "and the sleeve"  # the deciding vote's correction first
    assert decision.image_name is None


def test_votes_after_the_decision_are_refused(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=4)
    vote(item, experts[0], "reject")
    vote(item, experts[1], "reject")
    with pytest.raises(VoteRefused) as exc:
        vote_cast(item_id=item.pk, expert=experts[2], choice="approve", idempotency_key="late")
    assert exc.value.code == "decided"
    assert "already decided (reject)" in exc.value.message
    assert Vote.objects.filter(item=item).count() == 2
    assert len(decisions) == 1
    assert review_queue_next(expert=experts[3], stage="hv1") is None


def test_one_vote_per_expert(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=5)
    vote(item, experts[0], "approve")
    with pytest.raises(VoteRefused) as exc:
        vote_cast(item_id=item.pk, expert=experts[0], choice="reject", idempotency_key="again")
    assert exc.value.code == "already_voted"
    assert review_queue_next(expert=experts[0], stage="hv1") is None  # never offered again


def test_retried_submit_counts_once_and_returns_the_first_outcome(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=6)
    vote(item, experts[0], "approve")
    review_queue_next(expert=experts[1], stage="hv1")
    first = vote_cast(item_id=item.pk, expert=experts[1], choice="approve", idempotency_key="k")
    again = vote_cast(item_id=item.pk, expert=experts[1], choice="approve", idempotency_key="k")
    assert first.decided and again.decided and again.replayed and not first.replayed
    assert again.vote_id == first.vote_id
    assert Vote.objects.filter(item=item).count() == 2
    assert len(decisions) == 1
    other = review_item_open(stage="hv1", subject_id=60)
    review_queue_next(expert=experts[2], stage="hv1")
    with pytest.raises(VoteRefused) as exc:  # the same key from someone else, elsewhere
        vote_cast(item_id=other.pk, expert=experts[2], choice="approve", idempotency_key="k")
    assert exc.value.code == "idempotency_conflict"
    assert not Vote.objects.filter(item=other).exists()


def test_choices_are_checked_per_stage(experts) -> None:
    item = review_item_open(stage="hv1", subject_id=8)
    review_queue_next(expert=experts[0], stage="hv1")
    with pytest.raises(VoteRefused, match="not a choice of hv1"):
        vote_cast(item_id=item.pk, expert=experts[0], choice="discard", idempotency_key="x")
    hv3 = review_item_open(stage="hv3", subject_id=8)
    with pytest.raises(VoteRefused, match="needs a corrected image or an edit instruction"):
        vote_cast(item_id=hv3.pk, expert=experts[0], choice="correct", idempotency_key="y")


def test_seats_are_only_the_votes_that_can_still_change_the_outcome(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=9)
    got = [review_queue_next(expert=e, stage="hv1") for e in experts]
    # Fresh: two matching votes can decide it, so two seats.
    assert got[:2] == [item, item] and got[2:] == [None, None, None]
    item.refresh_from_db()
    assert item.leases_active == 2
    # Nobody votes past the queue either.
    with pytest.raises(VoteRefused) as exc:
        vote_cast(item_id=item.pk, expert=experts[3], choice="approve", idempotency_key="z")
    assert exc.value.code == "no_seat"
    # After one vote one more vote can decide: the seat still held is that one.
    vote_cast(item_id=item.pk, expert=experts[0], choice="approve", idempotency_key="s0")
    assert review_queue_next(expert=experts[2], stage="hv1") is None
    # A split: one more seat, for the vote that breaks the tie.
    vote_cast(item_id=item.pk, expert=experts[1], choice="reject", idempotency_key="s1")
    assert review_queue_next(expert=experts[2], stage="hv1") == item
    assert review_queue_next(expert=experts[3], stage="hv1") is None


def test_a_revision_that_decides_ends_the_seat_another_expert_holds(experts, decisions) -> None:
    from review.models import LeaseStatus, ReviewLease
    from review.services import vote_revise

    item = review_item_open(stage="hv1", subject_id=91)
    vote(item, experts[0], "approve")
    vote(item, experts[1], "reject")
    assert review_queue_next(expert=experts[2], stage="hv1") == item  # the tie-breaker's seat
    outcome = vote_revise(item_id=item.pk, expert=experts[0], choice="reject")
    assert outcome.decided and outcome.decision_choice == "reject"
    item.refresh_from_db()
    assert item.status == ItemStatus.DECIDED and item.leases_active == 0
    seat = ReviewLease.objects.get(item=item, expert=experts[2])
    assert seat.status == LeaseStatus.RELEASED
    released = ReviewEvent.objects.filter(item=item, kind=EventKind.LEASE_RELEASED)
    assert [(e.expert_id, e.data["reason"]) for e in released] == [(experts[2].pk, "decided")]
    # The events tell the story in order: the revision, then the seat ended, then the decision.
    events = ReviewEvent.objects.filter(item=item).order_by("pk")
    kinds = list(events.values_list("kind", flat=True))
    assert kinds[-3:] == [EventKind.VOTE_REVISED, EventKind.LEASE_RELEASED, EventKind.DECISION]
    with pytest.raises(VoteRefused) as exc:
        vote_cast(item_id=item.pk, expert=experts[2], choice="approve", idempotency_key="late")
    assert exc.value.code == "decided"
    assert [(d.item_id, d.choice) for d in decisions] == [(item.pk, "reject")]


def test_an_hv3_three_way_split_seats_one_more_expert(experts, decisions) -> None:
    item = review_item_open(stage="hv3", subject_id=90)
    for n in range(2):
        assert review_queue_next(expert=experts[n], stage="hv3") == item
    for n, choice in enumerate(["regenerate", "discard"]):
        vote_cast(item_id=item.pk, expert=experts[n], choice=choice, idempotency_key=f"h{n}")
    assert review_queue_next(expert=experts[2], stage="hv3") == item
    assert review_queue_next(expert=experts[3], stage="hv3") is None
    vote_cast(
        item_id=item.pk,
        expert=experts[2],
        choice="correct",
        instruction="fix the hands",
        idempotency_key="h2",
    )
    item.refresh_from_db()
    assert item.status == "open" and item.lead_votes == 1
    assert review_queue_next(expert=experts[3], stage="hv3") == item
    assert review_queue_next(expert=experts[4], stage="hv3") is None
    outcome = vote_cast(item_id=item.pk, expert=experts[3], choice="discard", idempotency_key="h3")
    assert outcome.decided and outcome.decision_choice == "discard"


def test_expired_lease_frees_the_seat(experts, settings) -> None:
    item = review_item_open(stage="hv1", subject_id=10)
    for e in experts[:2]:
        assert review_queue_next(expert=e, stage="hv1") == item
    assert review_queue_next(expert=experts[2], stage="hv1") is None
    settings.HILAPP_REVIEW_LEASE_S = -1  # every lease given so far is now in the past
    ReviewItem.objects.filter(pk=item.pk).update(lease_expires_min="2000-01-01T00:00:00Z")
    from review.models import ReviewLease

    ReviewLease.objects.filter(item=item).update(expires_at="2000-01-01T00:00:00Z")
    settings.HILAPP_REVIEW_LEASE_S = 600
    assert review_queue_next(expert=experts[3], stage="hv1") == item
    kinds = list(ReviewEvent.objects.filter(item=item).values_list("kind", flat=True))
    assert kinds.count(EventKind.LEASE_EXPIRED) == 2
    assert kinds.count(EventKind.LEASE_GIVEN) == 3


def test_queue_order_is_priority_then_oldest(experts) -> None:
    old = review_item_open(stage="hv2", subject_id=20)
    new = review_item_open(stage="hv2", subject_id=21)
    urgent = review_item_open(stage="hv2", subject_id=22, priority=5)
    e = experts[0]
    assert review_queue_next(expert=e, stage="hv2") == urgent
    assert review_queue_next(expert=e, stage="hv2") == urgent  # a reload gets the same item
    assert review_queue_next(expert=e, stage="hv2", exclude=[urgent.pk]) == old
    assert review_queue_next(expert=e, stage="hv2", exclude=[urgent.pk, old.pk]) == new


def test_skip_is_not_offered_again_and_frees_the_seat(experts) -> None:
    from review.services import review_lease_release

    a = review_item_open(stage="hv1", subject_id=30)
    b = review_item_open(stage="hv1", subject_id=31)
    assert review_queue_next(expert=experts[0], stage="hv1") == a
    assert review_lease_release(expert=experts[0], item_id=a.pk)
    assert review_queue_next(expert=experts[0], stage="hv1") == b
    a.refresh_from_db()
    assert a.leases_active == 0


def test_audit_trail_keeps_everything(experts, decisions) -> None:
    item = review_item_open(stage="hv1", subject_id=40)
    vote(item, experts[0], "approve", comment="ok")
    vote(item, experts[1], "approve")
    kinds = list(
        ReviewEvent.objects.filter(item=item).order_by("pk").values_list("kind", flat=True)
    )
    assert kinds == [
        "opened",
        "lease_given",
        "vote",
        "lease_given",
        "vote",
        "decision",
    ]
    assert ReviewDecision.objects.get(item=item).deciding_vote.expert == experts[1]


def test_a_failing_handler_records_nothing(experts) -> None:
    from review import handlers

    def boom(decision: Any) -> None:
        raise RuntimeError("synthesis is down")

    saved = dict(handlers._decision_handlers)
    handlers.register_decision_handler("hv1", boom)
    try:
        item = review_item_open(stage="hv1", subject_id=50)
        vote(item, experts[0], "approve")
        review_queue_next(expert=experts[1], stage="hv1")
        with pytest.raises(RuntimeError):
            vote_cast(item_id=item.pk, expert=experts[1], choice="approve", idempotency_key="b")
        item.refresh_from_db()
        assert item.status == "open" and item.votes_count == 1
        assert not ReviewDecision.objects.exists()
    finally:
        handlers._decision_handlers.clear()
        handlers._decision_handlers.update(saved)
