"""Phases II and III through real Celery worker processes (not eager), on the configured DB and
broker: a batch of 20 stories to completion, then the same while workers are SIGKILLed.

HV2 and HV3 are decided by expert votes through the review app (whose decision handlers call
the story and frame services). The test process plays the beat: it runs the reconciler every
couple of seconds, with short leases, so work held by a killed worker is sent again quickly.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import Count

from review.models import ItemStatus, ReviewItem
from review.services import vote_cast
from synthesis.models import Batch, Frame, FrameCharacter, GateAttempt, ModelCall, StatusChange
from synthesis.services.reconcile import reconcile_stuck_work
from synthesis.services.stories import batch_launch_stories
from synthesis.states import AttemptStatus, CallStatus, FrameStatus, StoryStatus
from tests.conftest import Workers
from tests.synthesis.story_factories import locked_characters

SIZE = 128
LEASE_S = 4
STORIES = 20
FAULTS = {
    "transient_error": 0.02,
    "malformed_output": 0.02,
    "invalid_script": 0.2,
    "low_viescore": 0.2,
    "identity_drift": 0.08,
    "wrong_composition": 0.04,
    "wrong_pose": 0.1,
    "color_fault": 0.04,
    "lie_failure": 0.3,
}
STORY_RESTING = {
    StoryStatus.COMPLETE,
    StoryStatus.DROPPED,
    StoryStatus.REJECTED,
    StoryStatus.FAILED,
}
IMAGE_ROLES = {"reference_editor", "frame_synthesizer", "local_editor"}


def _setup(workers: Workers, settings: Any) -> None:
    env = {
        "HILAPP_TEMPLATE_SIZE": str(SIZE),
        "HILAPP_FRAME_SIZE": str(SIZE),
        "HILAPP_LEASE_S": str(LEASE_S),
        "HILAPP_AUDIT_RATE": "0",
    }
    workers.env.update(env)
    settings.HILAPP_LEASE_S = LEASE_S
    settings.HILAPP_TEMPLATE_SIZE = SIZE


def _vote(item: ReviewItem, experts: list[Any], choice: str) -> None:
    for i, expert in enumerate(experts[:2]):
        vote_cast(
            item_id=item.pk,
            expert=expert,
            choice=choice,
            idempotency_key=f"{item.pk}-{i}",
            comment=f"test {choice}",
        )


def _review(batch: Batch, experts: list[Any]) -> None:
    """HV2 approves every script; HV3 regenerates a frame once, then discards it."""
    for item in ReviewItem.objects.filter(
        stage="hv2", status=ItemStatus.OPEN, subject_id__in=batch.stories.values("pk")
    ):
        _vote(item, experts, "approve")
    frames = Frame.objects.filter(story__batch=batch)
    for item in ReviewItem.objects.filter(
        stage="hv3", status=ItemStatus.OPEN, subject_id__in=frames.values("pk")
    ):
        frame = frames.get(pk=item.subject_id)
        _vote(item, experts, "regenerate" if frame.round == 1 else "discard")


def _run(
    batch: Batch,
    experts: list[Any],
    workers: Workers,
    *,
    timeout: float,
    tick: Callable[[], None] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    last_reconcile = 0.0
    while True:
        _review(batch, experts)
        tick()
        if not batch.stories.exclude(status__in=STORY_RESTING).exists():
            return
        if time.monotonic() - last_reconcile > 2:
            reconcile_stuck_work()
            last_reconcile = time.monotonic()
        if time.monotonic() > deadline:
            counts = Counter(batch.stories.values_list("status", flat=True))
            frames = Counter(
                Frame.objects.filter(story__batch=batch).values_list("status", flat=True)
            )
            print(workers.logs())
            raise AssertionError(f"batch not finished after {timeout}s: {counts} {frames}")
        time.sleep(0.5)


def _launch(seed: int) -> Batch:
    locked_characters(8, size=SIZE, seed=seed)
    params = {"sim": {"faults": FAULTS}, "min_frames": 2, "max_frames": 3}
    return batch_launch_stories(count=STORIES, seed=seed, params=params)


def _check_invariants(batch: Batch) -> None:
    stories = Counter(batch.stories.values_list("status", flat=True))
    assert set(stories) <= STORY_RESTING, stories
    assert stories[StoryStatus.COMPLETE] >= 10, stories
    frames = Frame.objects.filter(story__batch=batch)
    assert frames.exists()
    assert set(frames.values_list("status", flat=True)) <= {
        FrameStatus.APPROVED,
        FrameStatus.DISCARDED,
    }
    # Every frame reached its terminal state exactly once.
    for frame in frames:
        finals = StatusChange.objects.filter(
            model="frame", object_id=frame.pk, new__in=(FrameStatus.APPROVED, FrameStatus.DISCARDED)
        )
        assert finals.count() == 1, (frame.pk, list(finals.values_list("old", "new")))
        # one HV3 item per hard failure, each decided once
        hard = StatusChange.objects.filter(
            model="frame", object_id=frame.pk, new=FrameStatus.HARD_FAILED
        ).count()
        assert ReviewItem.objects.filter(stage="hv3", subject_id=frame.pk).count() == hard
    # No attempt recorded twice: numbers run 1..n per subject, and only the last of a round
    # may be anything but a failure.
    attempts = GateAttempt.objects.filter(frame__story__batch=batch) | GateAttempt.objects.filter(
        reference__frame__story__batch=batch
    )
    chains: dict[tuple[str, int], list[GateAttempt]] = {}
    for attempt in attempts.order_by("number"):
        key = (attempt.kind, attempt.frame_id or attempt.reference_id or 0)
        chains.setdefault(key, []).append(attempt)
    for key, chain in chains.items():
        assert [a.number for a in chain] == list(range(1, len(chain) + 1)), key
        for a, b in itertools.pairwise(chain):
            assert b.round >= a.round
            if b.round == a.round:
                assert a.status == AttemptStatus.FAILED, (key, a.number, a.status)
    for fc in FrameCharacter.objects.filter(frame__story__batch=batch, reference_status="approved"):
        assert fc.attempts.filter(status=AttemptStatus.PASSED).count() == 1
    # The ledger matches the attempts: each produced image came from an ok call linked to its
    # attempt, and each judged attempt has its judge's ok calls.
    produced = attempts.exclude(image="")
    assert produced.exists()
    for attempt in produced:
        assert ModelCall.objects.filter(
            attempt=attempt,
            status=CallStatus.OK,
            role__in=IMAGE_ROLES,
            output__image_sha256=attempt.image_sha256,
        ).exists(), attempt.pk
        if attempt.status in (AttemptStatus.PASSED, AttemptStatus.FAILED):
            judge = "arbitrator" if attempt.kind == "frame" else "judge"
            assert ModelCall.objects.filter(
                attempt=attempt, status=CallStatus.OK, role=judge
            ).exists()
    assert not attempts.filter(status__in=(AttemptStatus.PENDING, AttemptStatus.PRODUCED))
    # Each review item was decided once.
    decided = ReviewItem.objects.filter(status=ItemStatus.DECIDED)
    assert not decided.annotate(n=Count("decision")).exclude(n=1).exists()


@pytest.mark.worker
def test_twenty_stories_through_real_workers(
    celery_workers: Workers, settings: Any, make_user: Any
) -> None:
    _setup(celery_workers, settings)
    experts = [make_user(f"p3expert{i}") for i in range(2)]
    # The filesystem broker hands a worker process about one message a second: more processes
    # (cheap here, the simulator is fast) keep the embedded run short.
    celery_workers.start(concurrency=4)
    batch = _launch(seed=21)
    _run(batch, experts, celery_workers, timeout=420)
    _check_invariants(batch)


@pytest.mark.worker
def test_twenty_stories_survive_workers_killed_twice(
    celery_workers: Workers, settings: Any, make_user: Any
) -> None:
    _setup(celery_workers, settings)
    experts = [make_user(f"p3expert{i}") for i in range(2)]
    rng = random.Random()
    victim = celery_workers.start(concurrency=2)
    celery_workers.start(concurrency=2)
    batch = _launch(seed=22)
    # Kill at random moments while the model calls are flowing (by ledger size).
    kill_at = sorted(rng.sample(range(60, 400), 2))
    kills: list[int] = []

    def tick() -> None:
        nonlocal victim
        calls = ModelCall.objects.filter(batch=batch).count()
        if kill_at and calls >= kill_at[0]:
            kill_at.pop(0)
            celery_workers.kill(victim)
            kills.append(calls)
            victim = celery_workers.start(concurrency=2)

    _run(batch, experts, celery_workers, timeout=480, tick=tick)
    assert len(kills) == 2, f"the batch finished before both kills ({kills})"
    _check_invariants(batch)
