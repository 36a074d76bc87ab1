"""Read-side selectors: counts per status, batch progress per phase, the pipeline status report.

Progress reads the work-unit registry (``synthesis.work_units``): a unit in a working state is
machine work, one in a waiting state waits for people (a review stage), every other is done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import models
from django.db.models import Count
from django.utils import timezone

from review.models import ReviewItem
from synthesis.models import Batch, Character, Frame, FrameCharacter, ModelCall, Story
from synthesis.states import BatchKind, BatchStatus, CallStatus
from synthesis.work_units import PHASES, PHASES_OF_KIND, WORK_UNITS, WorkUnit, units_owned_by


def counts_by_status(queryset: models.QuerySet[Any], field: str = "status") -> dict[str, int]:
    rows = queryset.order_by().values(field).annotate(n=Count("pk"))
    return {row[field]: row["n"] for row in rows}


@dataclass(frozen=True)
class PhaseProgress:
    """One phase of a batch: its units split into machine work, waiting for humans and done."""

    phase: str
    label: str  # what is counted: characters, stories, frames
    machine: int
    humans: int
    done: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.machine + self.humans + self.done

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": BatchKind(self.phase).label, "total": self.total}


def batch_phase_progress(batch: Batch) -> list[PhaseProgress]:
    """Per phase the batch owns (a story batch: stories, then the frames of its stories that
    no frame run took), down to frames."""
    rows = []
    for phase in PHASES_OF_KIND[batch.kind]:
        units = PHASES[phase]
        counts = counts_by_status(units.model._default_manager.filter(units.owner.of(batch)))
        machine = sum(counts.get(s, 0) for s in units.machine_states())
        humans = sum(counts.get(s, 0) for s in units.human_states())
        done = sum(counts.values()) - machine - humans
        if phase != batch.kind and not counts:
            continue  # e.g. a story batch whose stories have no frames yet
        rows.append(PhaseProgress(phase, units.label, machine, humans, done, counts))
    return rows


def batch_counts(batch: Batch) -> dict[str, int]:
    """Counts per status of the batch's own units (characters, stories or frames)."""
    units = PHASES[batch.kind]
    return counts_by_status(units.model._default_manager.filter(units.owner.of(batch)))


def batch_progress(batch: Batch) -> tuple[int, int]:
    """(units done — neither machine work nor waiting for people —, all units), over every
    phase the batch owns."""
    phases = batch_phase_progress(batch)
    return sum(p.done for p in phases), sum(p.total for p in phases)


def batch_is_finished(batch: Batch) -> bool:
    """Running: every unit it owns rests (no machine work, nothing waiting for people).
    Cancelled: nothing it owns is in flight any more (no call started, no live lease)."""
    if batch.status == BatchStatus.CANCELLED:
        return not _in_flight(batch)
    own = PHASES[batch.kind]
    if not own.model._default_manager.filter(own.owner.of(batch)).exists():
        return False
    return not any(
        units_owned_by(unit, batch).filter(unit.in_states(unit.busy_states())).exists()
        for unit in batch_work_units(batch)
    )


def batch_work_units(batch: Batch) -> list[WorkUnit]:
    """The work units a batch of this kind can own."""
    return [unit for unit in WORK_UNITS if unit.phase in PHASES_OF_KIND[batch.kind]]


def _in_flight(batch: Batch) -> bool:
    if ModelCall.objects.filter(batch=batch, status=CallStatus.STARTED).exists():
        return True
    now = timezone.now()
    return any(
        units_owned_by(unit, batch)
        .filter(unit.in_states(unit.working), lease_until__gt=now)
        .exists()
        for unit in batch_work_units(batch)
    )


def pipeline_status() -> dict[str, dict[str, int]]:
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
