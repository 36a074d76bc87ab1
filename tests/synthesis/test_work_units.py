"""The work-unit registry: one answer to "which batch owns this unit", read by the reconciler,
progress and the batch report."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from synthesis.models import Batch, Frame, FrameCharacter, Story
from synthesis.services.batch_lifecycle import batch_cancel, batch_launch, batch_pause
from synthesis.services.batch_report import batch_report
from synthesis.services.hv3 import frame_apply_hv3
from synthesis.services.progress import batch_phase_progress, batch_progress
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.services.stories import batch_launch_stories, story_apply_review
from synthesis.states import BatchKind, CharacterStatus, FrameStatus, StoryStatus
from synthesis.work_units import WORK_UNITS
from tests.conftest import EAGER_IMAGE_SIZE
from tests.synthesis.story_factories import locked_characters, sim_params

pytestmark = pytest.mark.django_db


def _approved_stories(capture: Any, count: int = 2, **rates: float) -> Batch:
    locked_characters(4, size=EAGER_IMAGE_SIZE)
    params = {**sim_params(**rates), "min_frames": 2, "max_frames": 2, "max_cast": 2}
    with capture(execute=True):
        batch = batch_launch_stories(count=count, seed=3, params=params)
    for story in batch.stories.filter(status=StoryStatus.PENDING_HV2):
        with capture(execute=True):
            assert story_apply_review(story_id=story.pk, approved=True)
    return batch


def _frame_run_waiting(capture: Any, settings: Any) -> tuple[Batch, Batch]:
    """A story batch whose approved stories a frame run took; the run's first messages are
    captured, not run, so its frames wait in ``references``."""
    settings.HILAPP_PHASE3_AUTOSTART = False
    stories = _approved_stories(capture)
    with capture(execute=False):
        run = batch_launch(kind=BatchKind.FRAMES, count=2, params=sim_params())
    assert Frame.objects.filter(story__frames_batch=run, status=FrameStatus.REFERENCES).count() >= 4
    return stories, run


def _expire_leases() -> None:
    for model in (Frame, FrameCharacter, Story):
        model._default_manager.update(lease_until=None)


def test_every_phase3_unit_is_owned_by_its_storys_phase3_batch(
    eager: None, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    stories, run = _frame_run_waiting(django_capture_on_commit_callbacks, settings)
    for unit in WORK_UNITS:
        for obj in unit.units():
            story = {Story: lambda o: o, Frame: lambda o: o.story}.get(
                unit.model, lambda o: getattr(getattr(o, "frame", None), "story", None) or o.batch
            )(obj)
            if not isinstance(story, Story):
                continue
            expected = story.phase3_batch if unit.phase == BatchKind.FRAMES else story.batch
            owners = [b for b in (stories, run) if unit.units().filter(unit.owner.of(b), pk=obj.pk)]
            assert owners == [expected], (unit.name, obj.pk)


def test_the_reconciler_follows_the_frame_run_not_the_story_batch(
    eager: None, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    stories, run = _frame_run_waiting(django_capture_on_commit_callbacks, settings)
    waiting = Frame.objects.filter(story__frames_batch=run).count()
    # The story batch paused, the run running: the run's lost frames are sent again.
    batch_pause(batch_id=stories.pk, actor="tester")
    _expire_leases()
    with django_capture_on_commit_callbacks() as sent:
        counts = reconcile_stuck_work()
    assert counts.get("frame_references") == waiting
    assert len(sent) >= waiting
    # The run paused: nothing of it is sent, whatever its story batch does.
    batch_pause(batch_id=run.pk, actor="tester")
    _expire_leases()
    with django_capture_on_commit_callbacks() as sent:
        counts = reconcile_stuck_work()
    assert "frame_references" not in counts and "story_completion" not in counts
    # The run cancelled: never again.
    batch_cancel(batch_id=run.pk, actor="tester")
    _expire_leases()
    counts = reconcile_stuck_work()
    assert "frame_references" not in counts
    run.refresh_from_db()
    assert run.finished_at is not None  # nothing of it is in flight


def test_progress_splits_machine_work_humans_and_done_per_phase(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_launch(kind=BatchKind.CHARACTERS, count=3, params=sim_params())
    (phase,) = batch_phase_progress(batch)
    assert (phase.label, phase.machine, phase.humans, phase.done) == ("characters", 3, 0, 0)
    batch.characters.filter(index=0).update(status=CharacterStatus.PENDING_HV1)
    batch.characters.filter(index=1).update(status=CharacterStatus.LOCKED)
    (phase,) = batch_phase_progress(batch)
    assert (phase.machine, phase.humans, phase.done, phase.total) == (1, 1, 1, 3)
    # Waiting for HV1 is not done: one of three.
    assert batch_progress(batch) == (1, 3)
    report = batch_report(batch)
    assert (report["machine"], report["humans"], report["done"], report["percent"]) == (
        1,
        1,
        1,
        33.3,
    )
    assert report["phases"][0]["total"] == 3


def test_a_story_batchs_progress_goes_down_to_frames_and_lists_discarded_frames(
    eager: None, django_capture_on_commit_callbacks: Any, settings: Any, make_user: Any
) -> None:
    # Every frame fails its gate (bad identity each round) and waits for HV3.
    batch = _approved_stories(django_capture_on_commit_callbacks, identity_drift=1.0)
    stories_phase, frames_phase = batch_phase_progress(batch)
    frames = Frame.objects.filter(story__batch=batch)
    assert frames.count() >= 4
    assert (stories_phase.label, stories_phase.done) == ("stories", 2)
    assert frames_phase.label == "frames"
    assert frames_phase.humans == frames.filter(status=FrameStatus.HARD_FAILED).count() > 0
    assert frames_phase.machine == 0
    for frame in frames.filter(status=FrameStatus.HARD_FAILED):
        with django_capture_on_commit_callbacks(execute=True):
            assert frame_apply_hv3(frame_id=frame.pk, choice="discard", reason="HV3 discard")
    report = batch_report(batch)
    discarded = [f for f in report["failures"] if "→ discarded" in f["what"]]
    assert discarded and all(f["what"].startswith("frame ") for f in discarded)
    assert report["phases"][1]["done"] == frames.count()
    # The batch page shows the split per phase.
    client = Client()
    client.force_login(make_user("boss", role="admin"))
    page = client.get(reverse("synthesis:batch", args=[batch.pk])).content.decode()
    assert 'id="phase-frames"' in page and "waiting for people" in page
