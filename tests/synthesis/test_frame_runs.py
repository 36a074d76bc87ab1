"""Frame-synthesis runs: with autostart off, approved stories wait for an admin's run."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from synthesis.models import Batch, ModelCall, Story
from synthesis.services.batch_lifecycle import batch_launch
from synthesis.services.launch_params import LaunchError
from synthesis.services.progress import batch_progress
from synthesis.services.stories import batch_launch_stories, story_apply_review
from synthesis.states import BatchKind, StoryStatus
from tests.synthesis.story_factories import locked_characters, sim_params

SIZE = 96


@pytest.fixture
def manual_phase3(eager: None, settings: Any) -> None:
    settings.HILAPP_PHASE3_AUTOSTART = False


def _approved_stories(capture: Any, n: int) -> list[Story]:
    locked_characters(5, size=SIZE)
    with capture(execute=True):
        batch = batch_launch_stories(
            count=n,
            seed=2,
            params={**sim_params(), "min_frames": 2, "max_frames": 3, "max_cast": 2},
        )
    stories = list(batch.stories.filter(status=StoryStatus.PENDING_HV2))
    with capture(execute=True):
        for story in stories:
            assert story_apply_review(story_id=story.pk, approved=True)
    return stories


@pytest.mark.django_db
def test_approved_stories_wait_and_a_run_renders_them(
    manual_phase3: None, django_capture_on_commit_callbacks: Any
) -> None:
    stories = _approved_stories(django_capture_on_commit_callbacks, 3)
    assert len(stories) >= 2
    assert not any(Story.objects.get(pk=s.pk).frames.exists() for s in stories)
    with django_capture_on_commit_callbacks(execute=True):
        run = batch_launch(
            kind=BatchKind.FRAMES, count=2, seed=4, budget_usd="50", params=sim_params()
        )
    taken = Story.objects.filter(frames_batch=run)
    assert taken.count() == 2
    assert set(taken.values_list("status", flat=True)) == {StoryStatus.COMPLETE}
    done, total = batch_progress(run)
    assert done == total == sum(s.frames.count() for s in taken)
    # Phase III's spend is on the run's ledger (its own budget), not the story batch's.
    frame_calls = ModelCall.objects.filter(subject__startswith="frame:")
    assert frame_calls.exists() and set(frame_calls.values_list("batch", flat=True)) == {run.pk}
    assert sum(c.cost_usd for c in ModelCall.objects.filter(batch=run)) <= Decimal(50)
    # The story that was not taken still waits.
    waiting = Story.objects.filter(status=StoryStatus.APPROVED, frames_batch__isnull=True)
    assert waiting.count() == len(stories) - 2


@pytest.mark.django_db
def test_a_run_with_nothing_waiting_is_refused_and_creates_nothing(
    manual_phase3: None, settings: Any
) -> None:
    with pytest.raises(LaunchError, match="no HV2-approved story is waiting"):
        batch_launch(kind=BatchKind.FRAMES, count=5)
    settings.HILAPP_PHASE3_AUTOSTART = True
    with pytest.raises(LaunchError, match="starts by itself"):
        batch_launch(kind=BatchKind.FRAMES, count=5)
    assert not Batch.objects.exists()
