"""Pause, resume (with a new budget) and cancel of character, story and frame-run batches,
through real Celery worker processes on the configured database and broker.

Each batch is launched before any worker runs, so its messages wait on the broker; the action
comes next and the workers start after it — what they do with those messages is what the test
checks, without depending on timing.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from synthesis.models import Batch, Character, Frame, ModelCall, Story
from synthesis.services.batch_lifecycle import batch_cancel, batch_launch, batch_pause, batch_resume
from synthesis.services.progress import batch_phase_progress
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.services.stories import story_apply_review
from synthesis.states import BatchKind, BatchStatus, CharacterStatus, FrameStatus, StoryStatus
from tests.conftest import Workers, tasks_run_eagerly, wait_until
from tests.synthesis.story_factories import locked_characters

pytestmark = pytest.mark.worker

SIZE = 96
FAST: dict[str, Any] = {"sim": {"faults": {}, "latency_ms": 0}}
STORY_PARAMS = {**FAST, "min_frames": 2, "max_frames": 2, "max_cast": 2}
# The state every unit of a fresh batch starts in, and the model of those units.
FIRST_STATE = {
    BatchKind.CHARACTERS: (Character, CharacterStatus.DRAFTING),
    BatchKind.STORIES: (Story, StoryStatus.SCRIPTING),
    BatchKind.FRAMES: (Frame, FrameStatus.REFERENCES),
}


@pytest.fixture
def workers(celery_workers: Workers, settings: Any) -> Workers:
    celery_workers.env.update(
        HILAPP_TEMPLATE_SIZE=str(SIZE),
        HILAPP_FRAME_SIZE=str(SIZE),
        HILAPP_AUDIT_RATE="0",
        HILAPP_PHASE3_AUTOSTART="0",
    )
    settings.HILAPP_TEMPLATE_SIZE = settings.HILAPP_FRAME_SIZE = SIZE
    settings.HILAPP_AUDIT_RATE = 0
    settings.HILAPP_PHASE3_AUTOSTART = False
    settings.HILAPP_RETRY_BASE_S = 0
    return celery_workers


def _launch(kind: str) -> Batch:
    """A batch of ``kind`` whose first messages wait on the broker (no worker runs yet)."""
    if kind == BatchKind.CHARACTERS:
        return batch_launch(kind=kind, count=3, params=FAST)
    locked_characters(4, size=SIZE)
    if kind == BatchKind.STORIES:
        return batch_launch(kind=kind, count=2, seed=3, params=STORY_PARAMS)
    # A frame run over two HV2-approved stories, scripted and approved in this process.
    with tasks_run_eagerly():
        stories = batch_launch(kind=BatchKind.STORIES, count=2, seed=3, params=STORY_PARAMS)
        for story in stories.stories.filter(status=StoryStatus.PENDING_HV2):
            assert story_apply_review(story_id=story.pk, approved=True)
    assert Story.objects.filter(status=StoryStatus.APPROVED).count() == 2
    return batch_launch(kind=kind, count=2, params=FAST)


def _units(batch: Batch) -> Any:
    model, _ = FIRST_STATE[BatchKind(batch.kind)]
    if model is Frame:
        return Frame.objects.filter(story__frames_batch=batch)
    return model._default_manager.filter(batch=batch)


def _start_and_drain(workers: Workers) -> None:
    """Start a worker and give it time to take every waiting message."""
    workers.start(concurrency=2)
    wait_until(lambda: "ready." in workers.logs(), timeout=60, message="worker ready")
    time.sleep(6)


def _machine_work(batch: Batch) -> int:
    return sum(p.machine for p in batch_phase_progress(batch))


@pytest.mark.parametrize("kind", list(BatchKind))
def test_a_paused_batch_starts_nothing_and_resume_with_a_new_budget_finishes_it(
    workers: Workers, kind: str
) -> None:
    batch = _launch(kind)
    _, first = FIRST_STATE[BatchKind(kind)]
    waiting = _units(batch).count()
    assert waiting >= 2
    batch_pause(batch_id=batch.pk, actor="tester")

    _start_and_drain(workers)
    # The workers dropped the paused batch's messages: no model was called, nothing moved.
    assert not ModelCall.objects.filter(batch=batch).exists(), workers.logs()
    assert set(_units(batch).values_list("status", flat=True)) == {first}
    # The reconciler leaves a paused batch's work alone even once the leases ran out.
    _units(batch).update(lease_until=None)
    counts = reconcile_stuck_work()
    assert not {"character_draft", "story_script", "frame_references"} & set(counts), counts

    batch_resume(batch_id=batch.pk, actor="tester", budget_usd="7.5")
    batch.refresh_from_db()
    assert (batch.status, batch.budget_usd) == (BatchStatus.RUNNING, Decimal("7.5"))
    wait_until(
        lambda: _machine_work(batch) == 0,
        timeout=240,
        message=f"{kind} batch's machine work after resume\n{workers.logs()}",
    )
    # Every unit was sent again and worked on, on this batch's ledger and within its budget.
    assert not _units(batch).filter(status=first).exists()
    calls = ModelCall.objects.filter(batch=batch)
    assert calls.count() >= waiting
    assert sum(c.cost_usd for c in calls) <= Decimal("7.5")
    if kind == BatchKind.FRAMES:
        # Phase III's spend is the run's, not the (paused-never) story batch's.
        assert not ModelCall.objects.filter(subject__startswith="frame:").exclude(batch=batch)


@pytest.mark.parametrize("kind", list(BatchKind))
def test_a_cancelled_batch_calls_no_model_and_is_never_resent(workers: Workers, kind: str) -> None:
    batch = _launch(kind)
    model, _ = FIRST_STATE[BatchKind(kind)]
    batch_cancel(batch_id=batch.pk, actor="tester")

    _start_and_drain(workers)
    _units(batch).update(lease_until=None)  # as if every message had been lost long ago
    counts = reconcile_stuck_work()
    assert not {"character_draft", "story_script", "frame_references", "frame_gate"} & set(
        counts
    ), counts
    time.sleep(2)
    assert not ModelCall.objects.filter(batch=batch).exists(), workers.logs()
    statuses = set(_units(batch).values_list("status", flat=True))
    if model is Frame:
        # Frames have no cancelled state: they stay where the cancel found them.
        assert statuses == {FrameStatus.REFERENCES}
    else:
        assert statuses == {"cancelled"}
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CANCELLED and batch.finished_at is not None
