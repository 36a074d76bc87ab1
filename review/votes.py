"""Votes: cast one, and when a choice reaches its second vote, decide the item and apply it.

``vote_cast`` is one short transaction that locks the item row (``SELECT … FOR UPDATE``; on SQLite
the IMMEDIATE transactions serialize writers) and re-reads the item's votes, so concurrent
experts never vote twice and never decide an item twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.utils import timezone

from hilapp.imaging import ImageRejected, validate_image_upload
from review.corrections import correction_store
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
from review.queue import leases_expire_stale
from review.stages import Choice, choices_for, lead_votes, open_seats, winning_choice

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 80
COMMENT_MAX = 4000
# Dwell time a vote may carry: one hour. A card left open longer measures absence, not work.
DWELL_MAX_MS = 3_600_000
GUIDELINE_VERSION_RE = re.compile(r"[0-9a-f]{1,16}")


class VoteRefused(Exception):
    """A vote (or lease) the rules do not allow; ``message`` is meant for the expert.

    ``code`` says why: ``not_found``, ``invalid`` (bad input, HTTP 400), ``decided``,
    ``already_voted``, ``not_voted`` (a revision without a vote), ``no_seat``,
    ``idempotency_conflict`` (HTTP 409).
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# What a submit asked for: (choice, comment, instruction, image bytes).
Payload = tuple[str, str, str, bytes | None]


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


def _same_payload(vote: Vote, sent: Payload) -> bool:
    """Whether a retried submit asks for what the recorded vote says (the image by content)."""
    choice, comment, instruction, image = sent
    image_sha = hashlib.sha256(image).hexdigest() if image else ""
    return (
        vote.choice == choice
        and vote.comment == comment
        and vote.instruction == instruction
        and (image_sha in vote.image_name if image_sha else not vote.image_name)
    )


def _replay(key: str, expert: Any, item_id: int, sent: Payload) -> VoteOutcome | None:
    vote = Vote.objects.filter(idempotency_key=key).first()
    if vote is None:
        return None
    if vote.expert_id != expert.pk or vote.item_id != item_id:
        raise VoteRefused(
            "This idempotency key was already used for another vote; send a new key.",
            code="idempotency_conflict",
        )
    if not _same_payload(vote, sent):
        # A reused key with another choice, comment or image: the new intent must not be
        # dropped silently behind the first vote's answer.
        raise VoteRefused(
            f"This idempotency key was already used for your vote {vote.choice!r} on this item "
            "with a different choice, comment or image; that vote stands. Send a new key only "
            "for a new vote.",
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


class _VoteRow(NamedTuple):
    """What a vote contributes to the rules and to a decision, read once per vote."""

    pk: int
    expert_id: int
    choice: str
    idempotency_key: str
    comment: str
    image_name: str
    instruction: str


def _vote_rows(item: ReviewItem) -> list[_VoteRow]:
    """The item's votes (at most four) in the order they were cast."""
    rows = Vote.objects.filter(item=item).order_by("pk").values_list(*_VoteRow._fields)
    return [_VoteRow(*row) for row in rows]


def vote_cast(
    *,
    item_id: int,
    expert: Any,
    choice: str,
    comment: str = "",
    idempotency_key: str,
    image: bytes | None = None,
    instruction: str = "",
    dwell_ms: int | None = None,
    guideline_version: str = "",
) -> VoteOutcome:
    """Record ``expert``'s vote on an open item; the vote that gives a choice its second vote
    decides the item and applies the decision, all in this one transaction.

    ``dwell_ms`` is how long the card was on screen (0 to ``DWELL_MAX_MS``; None: unknown) and
    ``guideline_version`` the guidelines the expert had. A retried submit (same
    ``idempotency_key``) returns the first outcome and records nothing. Raises ``VoteRefused``
    for anything the rules do not allow.
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
    _check_effort(dwell_ms, guideline_version)
    _check_image(image)
    try:
        return _vote_record(
            item_id=item_id,
            expert=expert,
            choice=choice,
            comment=comment,
            key=key,
            image=image,
            instruction=instruction,
            effort=(dwell_ms, guideline_version),
        )
    except IntegrityError as exc:
        # A concurrent submit with the same key won the race, or the key was used elsewhere.
        logger.info("review: vote on %s by %s hit %s", item_id, expert.pk, exc)
        replay = _replay(key, expert, item_id, (choice, comment, instruction, image))
        if replay is not None:
            return replay
        raise VoteRefused("You have already voted on this item.", code="already_voted") from None


def _check_effort(dwell_ms: int | None, guideline_version: str) -> None:
    if dwell_ms is not None and not 0 <= dwell_ms <= DWELL_MAX_MS:
        raise VoteRefused(
            f"dwell_ms is the time on screen in milliseconds, 0 to {DWELL_MAX_MS}.",
            code="invalid",
        )
    if guideline_version and not GUIDELINE_VERSION_RE.fullmatch(guideline_version):
        raise VoteRefused(
            "guideline_version is the hex version shown with the guidelines (1 to 16 digits).",
            code="invalid",
        )


def _check_image(image: bytes | None) -> None:
    if image:
        # Decoding is slow: do it before the item row is locked.
        try:
            validate_image_upload(image)
        except ImageRejected as exc:
            raise VoteRefused(f"The corrected image was refused: {exc}", code="invalid") from exc


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
    effort: tuple[int | None, str],
) -> VoteOutcome:
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None:
            raise VoteRefused(f"There is no review item {item_id}.", code="not_found")
        # The item's votes answer "retry?", "voted already?", the tally and the decision.
        votes = _vote_rows(item)
        mine = next((v for v in votes if v.expert_id == expert.pk), None)
        if mine is not None:
            if mine.idempotency_key == key:
                replay = _replay(key, expert, item_id, (choice, comment, instruction, image))
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
        leases_expire_stale(item, now)
        holds_seat = bool(
            ReviewLease.objects.filter(item=item, expert=expert, status=LeaseStatus.ACTIVE).update(
                status=LeaseStatus.VOTED, ended_at=now
            )
        )
        if holds_seat:
            item.leases_active -= 1
            if item.leases_active == 0:
                item.lease_expires_min = None
        elif item.leases_active >= open_seats(item.lead_votes):
            raise VoteRefused(
                "Other experts hold every seat on this item; take the next item from the queue.",
                code="no_seat",
            )
        image_name = correction_store(image) if image else ""
        vote = Vote.objects.create(
            item=item,
            expert=expert,
            stage=item.stage,
            choice=choice,
            comment=comment,
            idempotency_key=key,
            image_name=image_name,
            instruction=instruction,
            dwell_ms=effort[0],
            guideline_version=effort[1],
        )
        item.votes_count += 1
        event = ReviewEvent(
            item=item,
            expert=expert,
            kind=EventKind.VOTE,
            choice=choice,
            comment=comment,
            data={"vote_id": vote.pk, "image_name": image_name, "instruction": instruction},
        )
        votes.append(_VoteRow(vote.pk, expert.pk, choice, key, comment, image_name, instruction))
        winner = _count(item, [v.choice for v in votes])
        if winner is None:
            event.save()
            # lease_expires_min may now be earlier than the earliest active lease: harmless,
            # the queue then re-checks the item and refreshes it.
            item.save(
                update_fields=["votes_count", "lead_votes", "leases_active", "lease_expires_min"]
            )
        else:
            _decide(item, winner, vote, votes, now, events=[event])
        return VoteOutcome(
            item_id=item.pk,
            vote_id=vote.pk,
            choice=choice,
            decided=winner is not None,
            decision_choice=winner,
            replayed=False,
        )


def vote_revise(
    *,
    item_id: int,
    expert: Any,
    choice: str,
    comment: str | None = None,
    image: bytes | None = None,
    instruction: str = "",
    dwell_ms: int | None = None,
) -> VoteOutcome:
    """Change ``expert``'s vote on an item that is still open; a decided item is final.

    The consensus rule counts the revised vote like any other: if it gives a choice its second
    vote, it decides the item (and it is the deciding vote). Sending the vote it already is
    changes nothing (``replayed``), so a retried revision is harmless. ``comment=None`` keeps the
    comment; ``dwell_ms`` (the time on the item page) is added to the vote's.
    """
    comment = None if comment is None else comment.strip()
    instruction = (instruction or "").strip()
    if comment is not None and len(comment) > COMMENT_MAX:
        raise VoteRefused(f"The comment is over {COMMENT_MAX} characters.", code="invalid")
    _check_effort(dwell_ms, "")
    _check_image(image)
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(pk=item_id).first()
        if item is None:
            raise VoteRefused(f"There is no review item {item_id}.", code="not_found")
        vote = Vote.objects.filter(item=item, expert=expert).first()
        if vote is None:
            raise VoteRefused("You have not voted on this item yet.", code="not_voted")
        if item.status != ItemStatus.OPEN:
            raise VoteRefused(
                f"This item was decided ({item.decided_choice}); a decided item is final.",
                code="decided",
            )
        _check_choice(stage=item.stage, choice=choice, image=image, instruction=instruction)
        unchanged = (
            vote.choice == choice
            and (comment is None or comment == vote.comment)
            and not image
            and instruction == vote.instruction
        )
        if unchanged:
            return VoteOutcome(item.pk, vote.pk, choice, False, None, replayed=True)
        previous = vote.choice
        now = timezone.now()
        vote.choice = choice
        if comment is not None:
            vote.comment = comment
        vote.image_name = correction_store(image) if image else ""
        vote.instruction = instruction
        if dwell_ms is not None:
            vote.dwell_ms = (vote.dwell_ms or 0) + dwell_ms
        vote.revisions += 1
        vote.revised_at = now
        vote.save()
        event = ReviewEvent(
            item=item,
            expert=expert,
            kind=EventKind.VOTE_REVISED,
            choice=choice,
            comment=vote.comment,
            data={"vote_id": vote.pk, "from": previous, "image_name": vote.image_name},
        )
        votes = _vote_rows(item)
        winner = _count(item, [v.choice for v in votes])
        if winner is None:
            event.save()
            item.save(update_fields=["lead_votes"])
        else:
            leases_expire_stale(item, now)
            _decide(item, winner, vote, votes, now, events=[event])
        return VoteOutcome(item.pk, vote.pk, choice, winner is not None, winner, replayed=False)


def _count(item: ReviewItem, choices: list[str]) -> str | None:
    """Tally the item's votes (row locked): set ``lead_votes``, return the winner if any."""
    tally: dict[str, int] = {}
    for c in choices:
        tally[c] = tally.get(c, 0) + 1
    item.lead_votes = lead_votes(choices)
    return winning_choice(tally)


def _decide(
    item: ReviewItem,
    winner: str,
    deciding: Vote,
    votes: list[_VoteRow],
    now: datetime,
    *,
    events: list[ReviewEvent],
) -> None:
    """Close the locked item with ``winner`` and apply the decision (same transaction).

    ``votes`` are all the item's votes as they now stand; ``events`` (the deciding vote's) are
    written with the decision's own.
    """
    # The deciding vote's correction first, then the earlier one that agreed with it.
    agreeing = sorted((v for v in votes if v.choice == winner), key=lambda v: v.pk != deciding.pk)
    image_name = next((v.image_name for v in agreeing if v.image_name), "")
    instruction = next((v.instruction for v in agreeing if v.instruction), "")
    summary = "\n".join(f"[{v.choice}] {v.comment}" for v in votes if v.comment)
    # ``leases_active`` counts the item's active leases under its row lock (stale ones were
    # ended just before): with none, there is nothing to release and no need to look.
    others: list[tuple[int, int]] = []
    if item.leases_active:
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
        lead_votes=item.lead_votes,
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
            *events,
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
