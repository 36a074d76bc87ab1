"""The review stages, their choices and the consensus rule, written once.

HV1 (a character template), HV2 (a story script) and HV3 (a hard-failed frame) are the paper's
human-validation stages; ``audit`` is the sampled audit of frames that passed the automatic gate.
A panel of ``panel_size()`` distinct experts is drawn for an item; the first choice to reach
``DECIDE_AT`` votes decides. With three choices a three-way split is possible, and then one more
expert is drawn until a choice has two votes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

DECIDE_AT = 2


def panel_size() -> int:
    """The panel: how many distinct experts are drawn for a fresh item (setting, default 3)."""
    return int(getattr(settings, "HILAPP_REVIEW_PANEL", 3))


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


def open_seats(votes_count: int) -> int:
    """How many experts may work on an open item that already has ``votes_count`` votes.

    A fresh item seats the whole panel. Each vote takes one seat away; an item still open after
    the panel voted (an HV3 three-way split) seats one more expert at a time.
    """
    return max(panel_size() - votes_count, 1)


def winning_choice(tally: dict[str, int]) -> str | None:
    """The choice that has reached ``DECIDE_AT`` votes, if any.

    Votes are counted one at a time under the item's row lock, so at most one choice can be at
    the threshold when this is asked.
    """
    for choice, count in tally.items():
        if count >= DECIDE_AT:
            return choice
    return None
