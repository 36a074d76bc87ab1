"""Phase II: launching story batches, the Story Meta Prompt, HV2, and crash recovery."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from hilapp.celery import app as celery_app
from review.models import ReviewItem
from synthesis.models import Frame, GateAttempt, ModelCall, Story
from synthesis.services.launch_params import LaunchError
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.services.stories import DEFAULT_GENRES, batch_launch_stories, story_apply_review
from synthesis.states import AttemptStatus, FrameStatus, StoryStatus
from synthesis.vocabulary import load_vocabulary
from tests.synthesis.story_factories import locked_characters, sim_params

SIZE = 96
FRAMES = {"min_frames": 2, "max_frames": 3}


@pytest.mark.django_db
def test_cast_sizes_one_to_five_are_balanced_and_frames_wait_for_hv2(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    chars = locked_characters(7, size=SIZE)
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_launch_stories(count=20, seed=3, params={**sim_params(), **FRAMES})
    sizes = Counter(story.cast.count() for story in batch.stories.all())
    assert sizes == {1: 4, 2: 4, 3: 4, 4: 4, 5: 4}
    used = Counter(sc.character_id for s in batch.stories.all() for sc in s.cast.all())
    assert set(used) == {c.pk for c in chars}  # every locked CID gets stories
    assert {s.genre for s in batch.stories.all()} <= set(DEFAULT_GENRES)
    # With 2-3 frames a cast of 5 sometimes leaves someone out even after the repairs.
    statuses = Counter(batch.stories.values_list("status", flat=True))
    assert set(statuses) <= {StoryStatus.PENDING_HV2, StoryStatus.DROPPED}
    assert statuses[StoryStatus.PENDING_HV2] >= 15
    for story in batch.stories.filter(status=StoryStatus.DROPPED):
        assert "never appear(s) in any frame" in story.reason
    assert not Frame.objects.exists()  # nothing is drawn before HV2
    items = ReviewItem.objects.filter(stage="hv2", status="open")
    assert set(items.values_list("subject_id", flat=True)) == set(
        batch.stories.filter(status=StoryStatus.PENDING_HV2).values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_the_story_meta_prompt_carries_descriptions_vocabulary_and_genre(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    locked_characters(5, size=SIZE)
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_launch_stories(
            count=2, seed=1, params={**sim_params(), **FRAMES, "genres": ["space opera"]}
        )
    vocab = load_vocabulary()
    for story in batch.stories.all():
        assert story.genre == "space opera"
        call = ModelCall.objects.get(subject=f"story:{story.pk}")
        prompt = call.inputs["prompt"]
        assert call.prompt_name == "story_script" and call.role == "planner"
        assert "space opera" in prompt and "between 2 and 3 frames" in prompt
        for character in story.characters.all():
            assert f"{character.cid}: {character.name}. {character.visual_description}" in prompt
        for table in (vocab.poses, vocab.expressions, vocab.compositions):
            assert all(f"- {cid}: " in prompt for cid in table)
        assert len(call.inputs["images"]) == story.cast.count()  # the CID templates
        assert story.planner_model == call.model_label


@pytest.mark.django_db
def test_launch_refuses_bad_parameters_and_too_few_locked_characters(db: None) -> None:
    locked_characters(3, size=SIZE)
    with pytest.raises(LaunchError, match=r"need 5 locked characters .* only 3 are locked"):
        batch_launch_stories(count=5)
    with pytest.raises(LaunchError, match=r"min_frames .* must not exceed max_frames"):
        batch_launch_stories(count=5, params={"max_cast": 3, "min_frames": 9, "max_frames": 4})
    with pytest.raises(LaunchError, match="genres must be a list"):
        batch_launch_stories(count=5, params={"max_cast": 3, "genres": [1, 2]})
    with pytest.raises(LaunchError, match="max_cast must be between 1 and 5"):
        batch_launch_stories(count=5, params={"max_cast": 9})
    assert not Story.objects.exists()
    assert batch_launch_stories(count=3, params={"max_cast": 3}).stories.count() == 3


@pytest.mark.django_db
def test_hv2_approval_creates_the_frames_and_rejection_does_not(
    eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    locked_characters(5, size=SIZE)
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_launch_stories(
            count=2, seed=5, params={**sim_params(), **FRAMES, "max_cast": 2}
        )
    approved, rejected = batch.stories.filter(status=StoryStatus.PENDING_HV2)[:2]
    assert story_apply_review(story_id=rejected.pk, approved=False, reason="incoherent")
    assert Story.objects.get(pk=rejected.pk).status == StoryStatus.REJECTED
    assert not rejected.frames.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert story_apply_review(story_id=approved.pk, approved=True, reason="fine")
    assert not story_apply_review(story_id=approved.pk, approved=True, reason="again")
    approved.refresh_from_db()
    assert approved.status == StoryStatus.COMPLETE
    frames = list(approved.frames.order_by("index"))
    assert [f.frame_text for f in frames] == [f["frame_text"] for f in approved.script["frames"]]
    for frame, spec in zip(frames, approved.script["frames"], strict=True):
        cast = [(fc.character.cid, fc.pid, fc.eid, fc.ctag) for fc in frame.cast.all()]
        assert cast == [(c["cid"], c["pid"], c["eid"], c["ctag"]) for c in spec["characters"]]


@pytest.mark.django_db
def test_the_reconciler_recovers_work_a_dead_worker_left(
    eager: None, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """Messages lost and a step claimed by a worker that died: the reconciler finishes it."""
    locked_characters(5, size=SIZE)
    celery_app.conf.task_always_eager = False  # the messages of the launch are "lost"
    batch = batch_launch_stories(count=2, seed=2, params={**sim_params(), **FRAMES, "max_cast": 2})
    celery_app.conf.task_always_eager = True
    assert set(batch.stories.values_list("status", flat=True)) == {StoryStatus.SCRIPTING}
    past = timezone.now() - timedelta(seconds=1)
    Story.objects.update(lease_until=past)
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_stuck_work()["story_script"] == 2
    story = batch.stories.filter(status=StoryStatus.PENDING_HV2).first()
    assert story is not None
    celery_app.conf.task_always_eager = False  # lost again, after HV2
    story_apply_review(story_id=story.pk, approved=True, reason="ok")
    celery_app.conf.task_always_eager = True
    frame = story.frames.first()
    # A worker claimed the frame's references step and died: only its lease is left.
    Frame.objects.filter(story=story).update(lease_until=past)
    with django_capture_on_commit_callbacks(execute=True):
        counts = reconcile_stuck_work()
    assert counts["frame_references"] == story.frames.count()
    assert set(story.frames.values_list("status", flat=True)) == {FrameStatus.APPROVED}
    assert Story.objects.get(pk=story.pk).status == StoryStatus.COMPLETE
    # one attempt per reference and per frame: nothing was done twice
    assert not GateAttempt.objects.exclude(number=1).exists()
    assert GateAttempt.objects.filter(frame=frame).get().status == AttemptStatus.PASSED


@pytest.mark.django_db(transaction=True)
def test_launch_batch_command_and_pipeline_status(eager: None) -> None:
    # Real commits here: the eager tasks run at each commit, while --wait watches the batch.
    locked_characters(5, size=SIZE)
    out = StringIO()
    call_command(
        "launch_batch",
        "stories",
        "--count",
        "4",
        "--genre",
        "mystery",
        "--seed",
        "3",
        "--params",
        json.dumps({**FRAMES, "max_cast": 2}),
        "--sim-faults",
        "low_viescore=0.2",
        "--wait",
        "--timeout",
        "60",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    assert "launched batch" in text and "pending_hv2 4" in text
    assert set(Story.objects.values_list("genre", flat=True)) == {"mystery"}
    for story in Story.objects.all():
        story_apply_review(story_id=story.pk, approved=True, reason="ok")
    status = StringIO()
    call_command("pipeline_status", stdout=status)
    lines = status.getvalue()
    assert "stories" in lines and "complete 4" in lines
    assert "frames" in lines and "approved" in lines
