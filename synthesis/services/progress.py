"""Read-side selectors: counts per status, batch progress, the pipeline status report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Count

from synthesis.models import Batch, Character, Frame, FrameCharacter, Story
from synthesis.states import (
    BatchKind,
    CharacterStatus,
    FrameStatus,
    StoryStatus,
)


@dataclass(frozen=True)
class UnitKind:
    """The units a batch of one kind produces, and which of their states are still working."""

    model: type[models.Model]
    batch_path: str
    working: tuple[str, ...]
    # States that wait for people (HV2): not machine work, but the batch is not finished either,
    # so the reconciler keeps watching what follows them.
    waiting: tuple[str, ...] = ()


UNITS: dict[str, UnitKind] = {
    BatchKind.CHARACTERS: UnitKind(
        Character, "batch", (CharacterStatus.DRAFTING, CharacterStatus.RENDERING)
    ),
    # A story batch runs until its stories rest: scripted and reviewed, and, when approved, every
    # frame approved or discarded (Phase III runs under the story's batch).
    BatchKind.STORIES: UnitKind(
        Story, "batch", (StoryStatus.SCRIPTING, StoryStatus.APPROVED), (StoryStatus.PENDING_HV2,)
    ),
    BatchKind.FRAMES: UnitKind(
        Frame, "story__frames_batch", (FrameStatus.REFERENCES, FrameStatus.RENDERING)
    ),
}


def counts_by_status(queryset: models.QuerySet[Any], field: str = "status") -> dict[str, int]:
    rows = queryset.order_by().values(field).annotate(n=Count("pk"))
    return {row[field]: row["n"] for row in rows}


def batch_counts(batch: Batch) -> dict[str, int]:
    unit = UNITS[batch.kind]
    return counts_by_status(unit.model._default_manager.filter(**{unit.batch_path: batch}))


def batch_is_finished(batch: Batch) -> bool:
    unit = UNITS[batch.kind]
    units = unit.model._default_manager.filter(**{unit.batch_path: batch})
    busy = unit.working + unit.waiting
    return units.exists() and not units.filter(status__in=busy).exists()


def batch_progress(batch: Batch) -> tuple[int, int]:
    """(units that reached a resting state, all units)."""
    counts = batch_counts(batch)
    total = sum(counts.values())
    working = sum(counts.get(s, 0) for s in UNITS[batch.kind].working)
    return total - working, total


def pipeline_status() -> dict[str, dict[str, int]]:
    from review.models import ReviewItem

    review: dict[str, int] = {}
    for row in ReviewItem.objects.order_by().values("stage", "status").annotate(n=Count("pk")):
        review[f"{row['stage']}_{row['status']}"] = row["n"]
    return {
        "characters": counts_by_status(Character.objects.all()),
        "stories": counts_by_status(Story.objects.all()),
        "frames": counts_by_status(Frame.objects.all()),
        "references": counts_by_status(FrameCharacter.objects.all(), "reference_status"),
        "review": review,
    }
