"""Review write services: open items, hand out leases, cast votes, decide.

Every function is one short transaction that locks the item row (``SELECT … FOR UPDATE``; on
SQLite the IMMEDIATE transactions serialize writers) and re-reads what it depends on, so
concurrent experts never double-take a seat, never vote twice and never decide an item twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from hilapp.imaging import ImageRejected, validate_image_upload
from review.handlers import Decision, apply_decision
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
from review.stages import Choice, Stage, choices_for, open_seats, panel_size, winning_choice

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 80
COMMENT_MAX = 4000
# How many times the queue looks again when every candidate it saw was locked by someone else.
QUEUE_TRIES = 10


class VoteRefused(Exception):
    """A vote (or lease) the rules do not allow; ``message`` is meant for the expert.

    ``code`` says why: ``not_found``, ``invalid`` (bad input, HTTP 400), ``decided``,
    ``already_voted``, ``no_seat``, ``idempotency_conflict`` (HTTP 409).
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class VoteOutcome:
    item_id: int
    vote_id: int
    choice: str
    # Whether this vote decided the item, and what the decision was.
    decided: bool
    decision_choice: str | None
    # True when this was a retried submit (same idempotency key): nothing new was recorded.
    replayed: bool


def _lease_delta() -> timedelta:
    return timedelta(seconds=float(settings.HILAPP_REVIEW_LEASE_S))


def _skip_window() -> timedelta:
    # A skipped item is not offered to the same expert again for one lease period.
    return _lease_delta()


# --- items ---------------------------------------------------------------------------------------


def review_item_open(
    *, stage: str, subject_id: int, subject_label: str = "", priority: int = 0
) -> ReviewItem:
    """Open a review item for a subject, or return the subject's open item of that stage.

    Safe inside the caller's transaction: the insert runs in a savepoint, and a concurrent open of
    the same subject (the partial unique constraint) yields the other transaction's item.
    """
    if stage not in Stage.values:
        raise ValueError(f"Unknown review stage {stage!r}")
    existing = ReviewItem.objects.filter(
        stage=stage, subject_id=subject_id, status=ItemStatus.OPEN
    ).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            item = ReviewItem.objects.create(
                stage=stage,
                subject_id=subject_id,
                subject_label=subject_label[:200],
                priority=priority,
            )
            ReviewEvent.objects.create(item=item, kind=EventKind.OPENED)
    except IntegrityError:
        return ReviewItem.objects.get(stage=stage, subject_id=subject_id, status=ItemStatus.OPEN)
    return item


# --- leases --------------------------------------------------------------------------------------


def _refresh_lease_summary(item: ReviewItem) -> None:
    agg = ReviewLease.objects.filter(item=item, status=LeaseStatus.ACTIVE).aggregate(
        n=Count("pk"), first=Min("expires_at")
    )
    item.leases_active = agg["n"]
    item.lease_expires_min = agg["first"]


def _expire_stale_leases(item: ReviewItem, now: datetime) -> bool:
    """End the item's leases that ran out (item row locked). True when any did."""
    if item.lease_expires_min is None or item.lease_expires_min > now:
        return False
    stale = list(
        ReviewLease.objects.filter(
            item=item, status=LeaseStatus.ACTIVE, expires_at__lte=now
        ).values_list("pk", "expert_id")
    )
    if stale:
        ReviewLease.objects.filter(pk__in=[pk for pk, _ in stale]).update(
            status=LeaseStatus.EXPIRED, ended_at=now
        )
        ReviewEvent.objects.bulk_create(
            ReviewEvent(item=item, expert_id=expert_id, kind=EventKind.LEASE_EXPIRED)
            for _, expert_id in stale
        )
    _refresh_lease_summary(item)
    return True


def _candidates(
    *, expert_id: int, stage: str, now: datetime, exclude: Iterable[int]
) -> QuerySet[ReviewItem]:
    """Open items of ``stage`` that ``expert`` may take now, in queue order."""
    my_vote = Vote.objects.filter(item=OuterRef("pk"), expert_id=expert_id)
    my_lease = ReviewLease.objects.filter(item=OuterRef("pk"), expert_id=expert_id).filter(
        Q(status=LeaseStatus.ACTIVE, expires_at__gt=now)
        | Q(status=LeaseStatus.SKIPPED, ended_at__gt=now - _skip_window())
    )
    seat_free = Q(leases_active__lt=Greatest(Value(panel_size()) - F("votes_count"), Value(1)))
    qs = ReviewItem.objects.filter(stage=stage, status=ItemStatus.OPEN).filter(
        seat_free | Q(lease_expires_min__lte=now)
    )
    excluded = [int(pk) for pk in exclude]
    if excluded:
        qs = qs.exclude(pk__in=excluded)
    return qs.filter(~Exists(my_vote), ~Exists(my_lease)).order_by("-priority", "pk")


_LEASE_UPSERT = """
INSERT INTO {table} (item_id, expert_id, status, acquired_at, expires_at, ended_at)
VALUES (%s, %s, 'active', %s, %s, NULL)
ON CONFLICT (item_id, expert_id) DO UPDATE
    SET status = 'active', acquired_at = excluded.acquired_at,
        expires_at = excluded.expires_at, ended_at = NULL
    WHERE {table}.status NOT IN ('active', 'voted')
RETURNING id
"""


def _lease_upsert(*, item_id: int, expert_id: int, now: datetime, expires: datetime) -> bool:
    """Insert or re-activate the (item, expert) lease row in one statement; False when the
    expert already holds the seat or has voted (nothing changes then)."""
    sql = _LEASE_UPSERT.format(table=connection.ops.quote_name(ReviewLease._meta.db_table))
    with connection.cursor() as cursor:
        adapt = connection.ops.adapt_datetimefield_value
        cursor.execute(sql, [item_id, expert_id, adapt(now), adapt(expires)])
        return cursor.fetchone() is not None


def _take_seat(item: ReviewItem, expert: Any, now: datetime) -> bool:
    """Give ``expert`` a lease on the locked ``item`` if the fresh state allows it.

    The candidate query already excluded items the expert voted on or holds (one snapshot sees
    a vote and the end of its lease together), so this only re-checks the seat count, which the
    row lock makes current.
    """
    if item.status != ItemStatus.OPEN:
        return False
    changed = _expire_stale_leases(item, now)
    if item.leases_active >= open_seats(item.votes_count):
        if changed:
            item.save(update_fields=["leases_active", "lease_expires_min"])
        return False
    expires = now + _lease_delta()
    if not _lease_upsert(item_id=item.pk, expert_id=expert.pk, now=now, expires=expires):
        return False  # this expert already holds or has voted on it (a second tab)
    item.leases_active += 1
    if item.lease_expires_min is None or expires < item.lease_expires_min:
        item.lease_expires_min = expires
    item.save(update_fields=["leases_active", "lease_expires_min"])
    ReviewEvent.objects.create(
        item=item,
        expert=expert,
        kind=EventKind.LEASE_GIVEN,
        data={"expires_at": expires.isoformat()},
    )
    return True


def _held_item(*, expert: Any, stage: str, now: datetime, exclude: list[int]) -> ReviewItem | None:
    lease = (
        ReviewLease.objects.filter(
            expert=expert,
            status=LeaseStatus.ACTIVE,
            expires_at__gt=now,
            item__stage=stage,
            item__status=ItemStatus.OPEN,
        )
        .exclude(item_id__in=exclude)
        .select_related("item")
        .order_by("-item__priority", "item_id")
        .first()
    )
    return lease.item if lease is not None else None


def review_queue_next(*, expert: Any, stage: str, exclude: Iterable[int] = ()) -> ReviewItem | None:
    """The next item of ``stage`` that needs a vote from ``expert``, leased to them; or None.

    An item the expert already holds (a reload, a second tab) comes back first, unless it is in
    ``exclude`` (the page's current item when it pre-fetches the next one). Otherwise the highest
    priority, then oldest, open item the expert has not voted on and not skipped recently, with a
    free seat. ``SKIP LOCKED`` keeps concurrent experts from waiting on each other; when every
    candidate was locked, the queue waits on the first one rather than report "no work".
    """
    if stage not in Stage.values:
        raise ValueError(f"Unknown review stage {stage!r}")
    excluded = [int(pk) for pk in exclude]
    held = _held_item(expert=expert, stage=stage, now=timezone.now(), exclude=excluded)
    if held is not None:
        return held
    for attempt in range(QUEUE_TRIES):
        now = timezone.now()
        qs = _candidates(expert_id=expert.pk, stage=stage, now=now, exclude=excluded)
        with transaction.atomic():
            item = qs.select_for_update(skip_locked=True).first()
            if item is not None and _take_seat(item, expert, now):
                return item
        if item is not None:
            continue  # the fresh state said no; look again
        candidate = qs.values_list("pk", flat=True).first()
        if candidate is None:
            return None
        # Every candidate is locked by a short transaction: wait for the first one.
        with transaction.atomic():
            item = ReviewItem.objects.select_for_update().filter(pk=candidate).first()
            if item is not None and _take_seat(item, expert, timezone.now()):
                return item
        time.sleep(0.002 * attempt)
    logger.warning("review: queue gave up after %s tries (stage %s)", QUEUE_TRIES, stage)
    return None


def review_lease_release(*, expert: Any, item_id: int, skipped: bool = True) -> bool:
    """The expert gives their seat back (``skipped``: not offered to them again for a while)."""
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None:
            return False
        now = timezone.now()
        status = LeaseStatus.SKIPPED if skipped else LeaseStatus.RELEASED
        ended = ReviewLease.objects.filter(
            item=item, expert=expert, status=LeaseStatus.ACTIVE
        ).update(status=status, ended_at=now)
        if not ended:
            return False
        _refresh_lease_summary(item)
        item.save(update_fields=["leases_active", "lease_expires_min"])
        ReviewEvent.objects.create(
            item=item,
            expert=expert,
            kind=EventKind.LEASE_SKIPPED if skipped else EventKind.LEASE_RELEASED,
        )
        return True


def review_leases_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """End leases that ran out (for a periodic task; the queue also does it as it goes)."""
    now = now or timezone.now()
    ids = list(
        ReviewItem.objects.filter(status=ItemStatus.OPEN, lease_expires_min__lte=now).values_list(
            "pk", flat=True
        )[:limit]
    )
    done = 0
    for pk in ids:
        with transaction.atomic():
            item = ReviewItem.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if item is not None and _expire_stale_leases(item, now):
                item.save(update_fields=["leases_active", "lease_expires_min"])
                done += 1
    return done


# --- votes ---------------------------------------------------------------------------------------


def _replay(key: str, expert: Any, item_id: int) -> VoteOutcome | None:
    vote = Vote.objects.filter(idempotency_key=key).first()
    if vote is None:
        return None
    if vote.expert_id != expert.pk or vote.item_id != item_id:
        raise VoteRefused(
            "This idempotency key was already used for another vote; send a new key.",
            code="idempotency_conflict",
        )
    decision = ReviewDecision.objects.filter(item_id=item_id).first()
    decided = decision is not None and decision.deciding_vote_id == vote.pk
    return VoteOutcome(
        item_id=item_id,
        vote_id=vote.pk,
        choice=vote.choice,
        decided=decided,
        decision_choice=decision.choice if decided and decision else None,
        replayed=True,
    )


def _image_extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    return "webp"


def _store_correction(data: bytes) -> str:
    """Save a validated correction image under a content-addressed name; return that name."""
    name = f"review/corrections/{hashlib.sha256(data).hexdigest()}.{_image_extension(data)}"
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))


def vote_cast(
    *,
    item_id: int,
    expert: Any,
    choice: str,
    comment: str = "",
    idempotency_key: str,
    image: bytes | None = None,
    instruction: str = "",
) -> VoteOutcome:
    """Record ``expert``'s vote on an open item; the vote that gives a choice its second vote
    decides the item and applies the decision, all in this one transaction.

    A retried submit (same ``idempotency_key``) returns the first outcome and records nothing.
    Raises ``VoteRefused`` for anything the rules do not allow.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise VoteRefused(
            f"An idempotency_key of 1 to {IDEMPOTENCY_KEY_MAX} characters is required.",
            code="invalid",
        )
    comment = (comment or "").strip()
    instruction = (instruction or "").strip()
    if len(comment) > COMMENT_MAX:
        raise VoteRefused(f"The comment is over {COMMENT_MAX} characters.", code="invalid")
    if image:
        # Decoding is slow: do it before the item row is locked.
        try:
            validate_image_upload(image)
        except ImageRejected as exc:
            raise VoteRefused(f"The corrected image was refused: {exc}", code="invalid") from exc
    try:
        return _vote_record(
            item_id=item_id,
            expert=expert,
            choice=choice,
            comment=comment,
            key=key,
            image=image,
            instruction=instruction,
        )
    except IntegrityError as exc:
        # A concurrent submit with the same key won the race, or the key was used elsewhere.
        logger.info("review: vote on %s by %s hit %s", item_id, expert.pk, exc)
        replay = _replay(key, expert, item_id)
        if replay is not None:
            return replay
        raise VoteRefused("You have already voted on this item.", code="already_voted") from None


def _check_choice(*, stage: str, choice: str, image: bytes | None, instruction: str) -> None:
    allowed = choices_for(stage)
    if choice not in allowed:
        raise VoteRefused(
            f"{choice!r} is not a choice of {stage}; choose one of: {', '.join(allowed)}.",
            code="invalid",
        )
    if choice == Choice.CORRECT:
        if not image and not instruction:
            raise VoteRefused(
                "A manual correction needs a corrected image or an edit instruction.",
                code="invalid",
            )
    elif image or instruction:
        raise VoteRefused(
            "An image or an edit instruction goes only with a manual correction.", code="invalid"
        )


def _vote_record(
    *,
    item_id: int,
    expert: Any,
    choice: str,
    comment: str,
    key: str,
    image: bytes | None,
    instruction: str,
) -> VoteOutcome:
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None:
            raise VoteRefused(f"There is no review item {item_id}.", code="not_found")
        # The item's votes (at most four) answer "retry?", "voted already?" and the tally.
        votes = list(
            Vote.objects.filter(item=item)
            .order_by("pk")
            .values_list("pk", "expert_id", "choice", "idempotency_key")
        )
        mine = next((v for v in votes if v[1] == expert.pk), None)
        if mine is not None:
            if mine[3] == key:
                replay = _replay(key, expert, item_id)
                assert replay is not None
                return replay
            raise VoteRefused("You have already voted on this item.", code="already_voted")
        if item.status != ItemStatus.OPEN:
            raise VoteRefused(
                f"This item was already decided ({item.decided_choice}); your vote was not "
                "counted.",
                code="decided",
            )
        _check_choice(stage=item.stage, choice=choice, image=image, instruction=instruction)
        now = timezone.now()
        _expire_stale_leases(item, now)
        holds_seat = bool(
            ReviewLease.objects.filter(item=item, expert=expert, status=LeaseStatus.ACTIVE).update(
                status=LeaseStatus.VOTED, ended_at=now
            )
        )
        if holds_seat:
            item.leases_active -= 1
            if item.leases_active == 0:
                item.lease_expires_min = None
        elif item.leases_active >= open_seats(item.votes_count):
            raise VoteRefused(
                "Other experts hold every seat on this item; take the next item from the queue.",
                code="no_seat",
            )
        image_name = _store_correction(image) if image else ""
        vote = Vote.objects.create(
            item=item,
            expert=expert,
            stage=item.stage,
            choice=choice,
            comment=comment,
            idempotency_key=key,
            image_name=image_name,
            instruction=instruction,
        )
        item.votes_count += 1
        ReviewEvent.objects.create(
            item=item,
            expert=expert,
            kind=EventKind.VOTE,
            choice=choice,
            comment=comment,
            data={"vote_id": vote.pk, "image_name": image_name, "instruction": instruction},
        )
        tally: dict[str, int] = {}
        for c in [v[2] for v in votes] + [choice]:
            tally[c] = tally.get(c, 0) + 1
        winner = winning_choice(tally)
        if winner is None:
            # lease_expires_min may now be earlier than the earliest active lease: harmless,
            # the queue then re-checks the item and refreshes it.
            item.save(update_fields=["votes_count", "leases_active", "lease_expires_min"])
            return VoteOutcome(
                item_id=item.pk,
                vote_id=vote.pk,
                choice=choice,
                decided=False,
                decision_choice=None,
                replayed=False,
            )
        _decide(item, winner, vote, now)
        return VoteOutcome(
            item_id=item.pk,
            vote_id=vote.pk,
            choice=choice,
            decided=True,
            decision_choice=winner,
            replayed=False,
        )


def _decide(item: ReviewItem, winner: str, deciding: Vote, now: datetime) -> None:
    """Close the locked item with ``winner`` and apply the decision (same transaction)."""
    votes = list(Vote.objects.filter(item=item).order_by("pk"))
    # The deciding vote's correction first, then the earlier one that agreed with it.
    agreeing = sorted((v for v in votes if v.choice == winner), key=lambda v: v.pk != deciding.pk)
    image_name = next((v.image_name for v in agreeing if v.image_name), "")
    instruction = next((v.instruction for v in agreeing if v.instruction), "")
    summary = "\n".join(f"[{v.choice}] {v.comment}" for v in votes if v.comment)
    others = list(
        ReviewLease.objects.filter(item=item, status=LeaseStatus.ACTIVE).values_list(
            "pk", "expert_id"
        )
    )
    if others:
        ReviewLease.objects.filter(pk__in=[pk for pk, _ in others]).update(
            status=LeaseStatus.RELEASED, ended_at=now
        )
    changed = ReviewItem.objects.filter(pk=item.pk, status=ItemStatus.OPEN).update(
        status=ItemStatus.DECIDED,
        decided_choice=winner,
        decided_at=now,
        votes_count=item.votes_count,
        leases_active=0,
        lease_expires_min=None,
    )
    if changed != 1:  # impossible under the row lock; refuse rather than decide twice
        raise VoteRefused("This item was decided by someone else.", code="decided")
    item.status = ItemStatus.DECIDED
    item.decided_choice = winner
    item.decided_at = now
    item.leases_active = 0
    item.lease_expires_min = None
    ReviewDecision.objects.create(
        item=item,
        stage=item.stage,
        subject_id=item.subject_id,
        choice=winner,
        deciding_vote=deciding,
        comment_summary=summary,
        image_name=image_name,
        instruction=instruction,
    )
    ReviewEvent.objects.bulk_create(
        [
            *(
                ReviewEvent(
                    item=item,
                    expert_id=expert_id,
                    kind=EventKind.LEASE_RELEASED,
                    data={"reason": "decided"},
                )
                for _, expert_id in others
            ),
            ReviewEvent(
                item=item,
                kind=EventKind.DECISION,
                choice=winner,
                comment=summary,
                data={
                    "deciding_vote_id": deciding.pk,
                    "votes": {str(v.pk): v.choice for v in votes},
                    "image_name": image_name,
                    "instruction": instruction,
                },
            ),
        ]
    )
    apply_decision(
        Decision(
            item_id=item.pk,
            stage=item.stage,
            subject_id=item.subject_id,
            choice=winner,
            comment_summary=summary,
            image_name=image_name or None,
            instruction=instruction,
        )
    )
