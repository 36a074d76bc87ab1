"""Frame-synthesis runs: Phase III launched by an admin for HV2-approved stories that wait.

With ``HILAPP_PHASE3_AUTOSTART`` on (the default) Phase III starts when HV2 approves a story and
nothing waits here. With it off, approved stories wait until a run takes them, so the expensive
phase gets its own budget, provider mix and pause/cancel controls.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from synthesis.models import Batch, Frame, Story
from synthesis.services.launch_params import LaunchError, clean_launch
from synthesis.services.stories import story_frames_start
from synthesis.states import BatchKind, StoryStatus


def stories_waiting_for_frames() -> Any:
    """HV2-approved stories whose frames have not been created, oldest first."""
    # NOT EXISTS rather than a join: PostgreSQL refuses FOR UPDATE on an outer join's null side.
    has_frames = Exists(Frame.objects.filter(story=OuterRef("pk")))
    return (
        Story.objects.filter(status=StoryStatus.APPROVED, frames_batch__isnull=True)
        .filter(~has_frames)
        .order_by("id")
    )


def batch_launch_frames(
    *,
    count: Any,
    seed: int = 0,
    budget_usd: Any = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Batch:
    """Take up to ``count`` waiting stories into a new run and start their frames."""
    count, budget, cleaned = clean_launch(count=count, budget_usd=budget_usd, params=params)
    with transaction.atomic():
        # Lock the candidates so that two runs launched at once never take the same story.
        stories = list(stories_waiting_for_frames().select_for_update(skip_locked=True)[:count])
        if not stories:
            hint = (
                " Phase III starts by itself when HV2 approves a story "
                "(HILAPP_PHASE3_AUTOSTART is on)."
                if settings.HILAPP_PHASE3_AUTOSTART
                else ""
            )
            raise LaunchError(f"no HV2-approved story is waiting for frame synthesis.{hint}")
        batch = Batch.objects.create(
            kind=BatchKind.FRAMES,
            seed=seed,
            requested=len(stories),
            params=cleaned,
            budget_usd=budget,
            created_by=created_by,
            note="" if len(stories) == count else f"{len(stories)} of {count} stories were waiting",
        )
        Story.objects.filter(pk__in=[s.pk for s in stories]).update(frames_batch=batch)
        for story in stories:
            story.frames_batch = batch
            story_frames_start(story)
    return batch
