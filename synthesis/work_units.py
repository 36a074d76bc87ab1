"""The registry of work units: every step of the pipeline that a worker runs, written once.

For each unit: its model and status field, the states in which machines work on it and those in
which it waits for people, the batch that owns it, how to send it again, and the task and
service that run it. The reconciler, batch progress, resume and cancel all read this table;
``docs/pipeline.md`` shows it and ``tests/synthesis/test_pipeline_doc.py`` checks the two agree.

Which batch owns a unit has ONE answer: Phase I and II units belong to their ``batch``; Phase III
work (frames, their references and the story's completion) belongs to the story's frame run
(``Story.frames_batch``) when one took it, else to the story's own batch — the same rule as
``Story.phase3_batch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import models
from django.db.models import Q

from synthesis import dispatch
from synthesis.gate import gate_run, gate_send
from synthesis.gate_policies import policy_for
from synthesis.models import Batch, Character, Frame, FrameCharacter, Story
from synthesis.services.characters import character_draft, characters_send_draft
from synthesis.services.references import frame_references_advance
from synthesis.services.stories import stories_send_script, story_check_complete, story_script
from synthesis.states import (
    AttemptKind,
    BatchKind,
    CharacterStatus,
    FrameStatus,
    ReferenceStatus,
    StoryStatus,
)


@dataclass(frozen=True)
class Owner:
    """How a unit finds the batch that owns it, as query conditions on the unit's model.

    ``path`` leads from the unit to the object holding the batch foreign keys ("" for a
    character or story, "story__" for a frame, "frame__story__" for a frame's character).
    ``phase3``: the owner is the story's frame run if it has one, else the story's batch.
    """

    path: str = ""
    phase3: bool = False

    def _q(self, suffix: str, value: object) -> Q:
        own = Q(**{f"{self.path}batch{suffix}": value})
        if not self.phase3:
            return own
        run = f"{self.path}frames_batch"
        return Q(**{f"{run}{suffix}": value}) | (Q(**{f"{run}__isnull": True}) & own)

    def of(self, batch: Batch | int) -> Q:
        """Units owned by ``batch``."""
        return self._q("", batch)

    def status_in(self, *statuses: str) -> Q:
        """Units whose owning batch is in one of ``statuses`` (e.g. running)."""
        return self._q("__status__in", statuses)


@dataclass(frozen=True)
class WorkUnit:
    name: str
    phase: BatchKind  # the phase whose work it is
    model: type[models.Model]
    status_field: str
    working: tuple[str, ...]  # machines work on it: the reconciler resends it when stuck
    waiting: tuple[str, ...]  # it waits for people (a review stage) after its working states
    owner: Owner
    resend: Callable[[int], None]  # send the unit's next step again (after commit)
    task: str  # the Celery task the resend enqueues
    service: Callable[..., object]  # the service that task calls
    queue: str  # which queue runs the task (as in docs/pipeline.md)
    # A unit in this working state has not started yet; cancelling its batch moves it to
    # ``cancelled`` (None: the unit cannot be cancelled before it starts; it just waits).
    not_started: str | None = None
    cancelled: str | None = None

    def busy_states(self) -> tuple[str, ...]:
        return self.working + self.waiting

    def units(self) -> models.QuerySet[models.Model]:
        return self.model._default_manager.all()

    def in_states(self, states: tuple[str, ...]) -> Q:
        return Q(**{f"{self.status_field}__in": states})


def _resend_draft(pk: int) -> None:
    characters_send_draft([Character.objects.select_related("batch").get(pk=pk)])


def _resend_script(pk: int) -> None:
    stories_send_script([Story.objects.select_related("batch").get(pk=pk)])


def _resend_gate(kind: AttemptKind) -> Callable[[int], None]:
    def resend(pk: int) -> None:
        gate_send(policy_for(kind), pk)

    return resend


def _resend_frame_references(pk: int) -> None:
    dispatch.frame_references([pk])


OWN_BATCH = Owner()
PHASE3 = Owner(phase3=True)

WORK_UNITS: tuple[WorkUnit, ...] = (
    WorkUnit(
        "character_draft",
        BatchKind.CHARACTERS,
        Character,
        "status",
        (CharacterStatus.DRAFTING,),
        (),
        OWN_BATCH,
        _resend_draft,
        dispatch.DRAFT_TASK,
        character_draft,
        "by provider of planner",
        not_started=CharacterStatus.DRAFTING,
        cancelled=CharacterStatus.CANCELLED,
    ),
    WorkUnit(
        "character_gate",
        BatchKind.CHARACTERS,
        Character,
        "status",
        (CharacterStatus.RENDERING,),
        (CharacterStatus.PENDING_HV1,),
        OWN_BATCH,
        _resend_gate(AttemptKind.CHARACTER),
        dispatch.GATE_TASK,
        gate_run,
        "by provider of character_renderer / judge",
    ),
    WorkUnit(
        "story_script",
        BatchKind.STORIES,
        Story,
        "status",
        (StoryStatus.SCRIPTING,),
        (StoryStatus.PENDING_HV2,),
        OWN_BATCH,
        _resend_script,
        dispatch.STORY_SCRIPT_TASK,
        story_script,
        "by provider of planner",
        not_started=StoryStatus.SCRIPTING,
        cancelled=StoryStatus.CANCELLED,
    ),
    # An approved story completes once its frames rest; a lost check is cheap to send again.
    WorkUnit(
        "story_completion",
        BatchKind.FRAMES,
        Story,
        "status",
        (StoryStatus.APPROVED,),
        (),
        PHASE3,
        dispatch.story_check,
        dispatch.STORY_CHECK_TASK,
        story_check_complete,
        "default",
    ),
    WorkUnit(
        "frame_references",
        BatchKind.FRAMES,
        Frame,
        "status",
        (FrameStatus.REFERENCES,),
        (),
        Owner("story__", phase3=True),
        _resend_frame_references,
        dispatch.FRAME_REFERENCES_TASK,
        frame_references_advance,
        "default",
    ),
    WorkUnit(
        "frame_gate",
        BatchKind.FRAMES,
        Frame,
        "status",
        (FrameStatus.RENDERING,),
        (FrameStatus.HARD_FAILED,),
        Owner("story__", phase3=True),
        _resend_gate(AttemptKind.FRAME),
        dispatch.GATE_TASK,
        gate_run,
        "by provider of frame_synthesizer / local_editor / arbitrator / judge",
    ),
    WorkUnit(
        "reference_gate",
        BatchKind.FRAMES,
        FrameCharacter,
        "reference_status",
        (ReferenceStatus.EDITING,),
        (),
        Owner("frame__story__", phase3=True),
        _resend_gate(AttemptKind.REFERENCE),
        dispatch.GATE_TASK,
        gate_run,
        "by provider of reference_editor / judge",
    ),
)


@dataclass(frozen=True)
class PhaseUnits:
    """What a phase's progress counts: one model's units, split by its work units' states."""

    phase: BatchKind
    model: type[models.Model]
    label: str  # plural name of what is counted
    owner: Owner

    def work_units(self) -> list[WorkUnit]:
        return [u for u in WORK_UNITS if u.phase == self.phase and u.model is self.model]

    def machine_states(self) -> tuple[str, ...]:
        return tuple(s for u in self.work_units() for s in u.working)

    def human_states(self) -> tuple[str, ...]:
        return tuple(s for u in self.work_units() for s in u.waiting)


PHASES: dict[str, PhaseUnits] = {
    BatchKind.CHARACTERS: PhaseUnits(BatchKind.CHARACTERS, Character, "characters", OWN_BATCH),
    BatchKind.STORIES: PhaseUnits(BatchKind.STORIES, Story, "stories", OWN_BATCH),
    BatchKind.FRAMES: PhaseUnits(BatchKind.FRAMES, Frame, "frames", Owner("story__", phase3=True)),
}

# The phases whose units a batch of each kind owns (a story batch owns the Phase III work of
# its stories that no frame run took).
PHASES_OF_KIND: dict[str, tuple[str, ...]] = {
    BatchKind.CHARACTERS: (BatchKind.CHARACTERS,),
    BatchKind.STORIES: (BatchKind.STORIES, BatchKind.FRAMES),
    BatchKind.FRAMES: (BatchKind.FRAMES,),
}


def units_owned_by(unit: WorkUnit, batch: Batch | int) -> models.QuerySet[models.Model]:
    return unit.units().filter(unit.owner.of(batch))
