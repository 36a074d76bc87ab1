"""The review stages, their choices and the consensus rule, written once.

HV1 (a character template), HV2 (a story script) and HV3 (a hard-failed frame) are the paper's
human-validation stages; ``audit`` is the sampled audit of frames that passed the automatic gate.
The first choice to reach ``DECIDE_AT`` votes decides. Experts are seated only for votes that can
still change the outcome (``open_seats``): two on a fresh item, one after a vote, one more after a
split (HV3's three-way split too). So a two-choice item sees at most three distinct experts (the
paper's panel of three) and an HV3 item at most four.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models
from django.db.models import Q
from django.db.models.expressions import RawSQL

DECIDE_AT = 2


class Stage(models.TextChoices):
    HV1 = "hv1", "HV1 · character template"
    HV2 = "hv2", "HV2 · story script"
    HV3 = "hv3", "HV3 · hard-failed frame"
    AUDIT = "audit", "Audit · gate-approved frame"


class Choice(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    CORRECT = "correct", "Manual correction"
    REGENERATE = "regenerate", "Full regeneration"
    DISCARD = "discard", "Discard"


SUBJECT_KIND: dict[str, str] = {
    Stage.HV1: "character",
    Stage.HV2: "story",
    Stage.HV3: "frame",
    Stage.AUDIT: "frame",
}

STAGE_CHOICES: dict[str, tuple[str, ...]] = {
    Stage.HV1: (Choice.APPROVE, Choice.REJECT),
    Stage.HV2: (Choice.APPROVE, Choice.REJECT),
    Stage.HV3: (Choice.CORRECT, Choice.REGENERATE, Choice.DISCARD),
    Stage.AUDIT: (Choice.APPROVE, Choice.REJECT),
}

# Keyboard shortcuts shown on the review pages (and used by static/review/review.js).
CHOICE_KEYS: dict[str, str] = {
    Choice.APPROVE: "a",
    Choice.REJECT: "r",
    Choice.CORRECT: "1",
    Choice.REGENERATE: "2",
    Choice.DISCARD: "3",
}


def choices_for(stage: str) -> tuple[str, ...]:
    return STAGE_CHOICES[stage]


def lead_votes(choices: Iterable[str]) -> int:
    """The vote count of the leading choice among ``choices`` (0 for none)."""
    tally: dict[str, int] = {}
    for choice in choices:
        tally[choice] = tally.get(choice, 0) + 1
    return max(tally.values(), default=0)


def open_seats(lead: int) -> int:
    """How many experts may hold a seat on an open item whose leading choice has ``lead`` votes.

    The fewest further votes that can decide the item: every one of them is needed whatever the
    others choose, so no seated expert can find the item decided under them. A fresh item seats
    two; after one vote, or after any split, one.
    """
    return max(DECIDE_AT - lead, 1)


def seat_free_sql(alias: str = "") -> str:
    """``open_seats`` in SQL, over the item row's ``leases_active`` and ``lead_votes``:
    ``leases < max(DECIDE_AT - lead, 1)``, written without GREATEST so SQLite reads it too."""
    leases, lead = f"{alias}leases_active", f"{alias}lead_votes"
    return f"({leases} < {DECIDE_AT} - {lead} OR {leases} < 1)"


def seat_free_q() -> Q:
    """``seat_free_sql`` as a queryset filter."""
    return Q(RawSQL(seat_free_sql(), [], output_field=models.BooleanField()))


def winning_choice(tally: dict[str, int]) -> str | None:
    """The choice that has reached ``DECIDE_AT`` votes, if any.

    Votes are counted one at a time under the item's row lock, so at most one choice can be at
    the threshold when this is asked.
    """
    for choice, count in tally.items():
        if count >= DECIDE_AT:
            return choice
    return None
