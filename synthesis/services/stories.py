"""Phase II: structured narrative encoding (story scripts), HV2, and story completion.

launch → for each story, 1..5 locked characters (sizes balanced) and a genre → the planner fills
the Story Meta Prompt → the script is validated (``services.scripts``); an invalid one goes back
to the planner with the errors (bounded repairs), else the story is dropped with the reason →
an HV2 item opens. HV2 approval creates the frames and their (frame, character) control rows and
starts Phase III; the story is complete once every frame is approved or discarded.
"""

from __future__ import annotations

import json
import random
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from review.services import review_item_open
from synthesis import dispatch
from synthesis.artifacts import read_bytes
from synthesis.models import Batch, Character, Frame, FrameCharacter, Story, StoryCast
from synthesis.prompts import render_prompt
from synthesis.providers.base import ErrorKind, ProviderError, Role, TextRequest
from synthesis.providers.calls import CallContext, PlannedCall, call_text, queue_of
from synthesis.schemas import StoryScript
from synthesis.services.batches import batch_accepts_work
from synthesis.services.launch_params import LaunchError, clean_launch
from synthesis.services.scripts import script_validate
from synthesis.states import BatchKind, BatchStatus, CharacterStatus, FrameStatus, StoryStatus
from synthesis.transitions import transition
from synthesis.vocabulary import load_vocabulary

DEFAULT_GENRES = (
    "fantasy adventure",
    "slice of life",
    "mystery",
    "comedy",
    "fairy tale",
    "science fiction",
    "school life",
    "heist",
)
MAX_CAST = 5
MAX_FRAMES_LIMIT = 50


# --- launch --------------------------------------------------------------------------------------


def batch_launch_stories(
    *,
    count: Any,
    seed: int = 0,
    budget_usd: Any = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Batch:
    """Create a story batch, its stories and their casts; scripting starts on commit.

    ``params``: ``genres`` (list; default ``DEFAULT_GENRES``), ``min_frames``/``max_frames``
    (default the HILAPP_STORY_* settings), ``max_cast`` (1..5, default 5: story sizes cycle
    through 1..max_cast so that they come out balanced), plus the common ``roles``/``sim``.
    """
    count, budget, cleaned = clean_launch(count=count, budget_usd=budget_usd, params=params)
    cleaned["genres"] = _clean_genres(cleaned.get("genres"))
    cleaned["min_frames"], cleaned["max_frames"] = _clean_frame_range(cleaned)
    cleaned["max_cast"] = max_cast = _clean_int(
        cleaned.get("max_cast", MAX_CAST), "max_cast", 1, MAX_CAST
    )
    locked = list(
        Character.objects.filter(status=CharacterStatus.LOCKED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if len(locked) < max_cast:
        raise LaunchError(
            f"stories need {max_cast} locked characters to sample casts of 1 to {max_cast}, but "
            f"only {len(locked)} {'is' if len(locked) == 1 else 'are'} locked; lock more in HV1 "
            f"or pass max_cast <= {len(locked) or 1}"
        )
    rng = random.Random(seed)
    sizes = [1 + i % max_cast for i in range(count)]
    rng.shuffle(sizes)
    usage = dict.fromkeys(locked, 0)
    with transaction.atomic():
        batch = Batch.objects.create(
            kind=BatchKind.STORIES,
            seed=seed,
            requested=count,
            params=cleaned,
            budget_usd=budget,
            created_by=created_by,
        )
        stories = Story.objects.bulk_create(
            [
                Story(batch=batch, index=index, genre=rng.choice(cleaned["genres"]))
                for index in range(count)
            ]
        )
        stories = list(batch.stories.order_by("index"))
        casts = []
        for story, size in zip(stories, sizes, strict=True):
            for order, pk in enumerate(_sample_cast(rng, usage, size)):
                casts.append(StoryCast(story=story, character_id=pk, order=order))
        StoryCast.objects.bulk_create(casts, batch_size=500)
        stories_send_script(stories)
    return batch


def _sample_cast(rng: random.Random, usage: dict[int, int], size: int) -> list[int]:
    """``size`` distinct characters, favouring the least used so every CID gets stories."""
    pool = sorted(usage, key=lambda pk: (usage[pk], rng.random()))
    chosen = pool[:size]
    rng.shuffle(chosen)
    for pk in chosen:
        usage[pk] += 1
    return chosen


def _clean_genres(value: Any) -> list[str]:
    if value in (None, "", []):
        return list(DEFAULT_GENRES)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise LaunchError("genres must be a list of genre names")
    genres = [g.strip() for g in value if g.strip()]
    if not genres or any(len(g) > 64 for g in genres):
        raise LaunchError("each genre must be 1 to 64 characters")
    return genres


def _clean_int(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise LaunchError(f"{name} must be between {low} and {high}, not {number}")
    return number


def _clean_frame_range(params: dict[str, Any]) -> tuple[int, int]:
    low = _clean_int(
        params.get("min_frames", settings.HILAPP_STORY_MIN_FRAMES),
        "min_frames",
        1,
        MAX_FRAMES_LIMIT,
    )
    high = _clean_int(
        params.get("max_frames", settings.HILAPP_STORY_MAX_FRAMES),
        "max_frames",
        1,
        MAX_FRAMES_LIMIT,
    )
    if low > high:
        raise LaunchError(f"min_frames ({low}) must not exceed max_frames ({high})")
    return low, high


def frame_range(batch: Batch) -> tuple[int, int]:
    params = batch.params or {}
    return (
        int(params.get("min_frames", settings.HILAPP_STORY_MIN_FRAMES)),
        int(params.get("max_frames", settings.HILAPP_STORY_MAX_FRAMES)),
    )


# --- scripting -----------------------------------------------------------------------------------


def story_context(story: Story, attempt_id: int | None = None) -> CallContext:
    return CallContext.for_batch(story.batch, subject=f"story:{story.pk}", attempt_id=attempt_id)


def story_cast(story: Story) -> list[Character]:
    return [sc.character for sc in story.cast.select_related("character").order_by("order")]


def script_call(story: Story) -> PlannedCall:
    """The planner call of the story's next scripting step (each repair is routed anew)."""
    return PlannedCall(
        Role.PLANNER, f"story:{story.pk}:script:{story.repairs}", story_context(story)
    )


def stories_send_script(stories: list[Story]) -> None:
    """Send each story's scripting step to the queue of its planner (stories with batch)."""
    for story in stories:
        dispatch.story_script(story.pk, queue=queue_of(script_call(story)))


def story_script(*, story_id: int, here: str | None = None) -> bool:
    """Script the story: ask, validate, repair (bounded) until it is valid or dropped.

    Each planner answer is one guarded step (``repairs`` is the step counter), so a redelivered
    message continues where the last one stopped. A step whose planner belongs to another queue
    than ``here`` is sent there. True if this call moved the story on.
    """
    moved = False
    for _ in range(settings.HILAPP_SCRIPT_MAX_REPAIRS + 2):
        story = Story.objects.select_related("batch").get(pk=story_id)
        if story.status != StoryStatus.SCRIPTING:
            return moved
        if story.batch.status == BatchStatus.CANCELLED:
            return transition(
                Story,
                story.pk,
                old=StoryStatus.SCRIPTING,
                new=StoryStatus.CANCELLED,
                reason="batch cancelled",
            )
        if not batch_accepts_work(story.batch):
            return moved
        if here is not None and queue_of(script_call(story)) != here:
            stories_send_script([story])
            return moved
        step = _script_step(story)
        if step is None:
            return moved
        moved = True
    return moved


def _script_step(story: Story) -> bool | None:
    """One planner answer and what follows from it; None when a racer took the step."""
    cast = story_cast(story)
    cids = [c.cid for c in cast]
    low, high = frame_range(story.batch)
    repairing = bool(story.validation_errors)
    facts: dict[str, Any] = {
        "genre": story.genre,
        "characters": [
            {"cid": c.cid, "name": c.name, "visual_description": c.visual_description} for c in cast
        ],
        "min_frames": low,
        "max_frames": high,
        **load_vocabulary().as_prompt_lists(),
    }
    if repairing:
        previous = json.dumps(story.script, indent=1) if story.script else "(no parseable answer)"
        prompt = render_prompt(
            "story_repair", previous_script=previous, errors=story.validation_errors, **facts
        )
    else:
        prompt = render_prompt("story_script", **facts)
    request = TextRequest(
        role=Role.PLANNER,
        prompt=prompt,
        schema=StoryScript,
        images=[read_bytes(c.template) for c in cast if c.template],
        seed_key=script_call(story).seed_key,
        subject={"cids": cids, "min_frames": low, "max_frames": high, "genre": story.genre},
    )
    draft: dict[str, Any] | None = story.script
    model = story.planner_model
    try:
        result, call = call_text(request, story_context(story))
    except ProviderError as exc:
        if exc.kind != ErrorKind.MALFORMED:
            if exc.permanent and exc.kind != ErrorKind.BUDGET:
                transition(
                    Story,
                    story.pk,
                    old=StoryStatus.SCRIPTING,
                    new=StoryStatus.FAILED,
                    reason=str(exc),
                )
                return None
            raise
        errors = [f"the answer was not valid JSON for the story script schema ({exc})"]
    else:
        model = call.model_label
        check = script_validate(result.data, cids=cids, min_frames=low, max_frames=high)
        if check.valid:
            assert check.script is not None
            return _script_accept(story, check.script, model)
        errors = check.errors
        draft = check.script.model_dump() if check.script else None
    if story.repairs < settings.HILAPP_SCRIPT_MAX_REPAIRS:
        took = Story.objects.filter(
            pk=story.pk, status=StoryStatus.SCRIPTING, repairs=story.repairs
        ).update(
            repairs=F("repairs") + 1, script=draft, validation_errors=errors, planner_model=model
        )
        return True if took else None
    transition(
        Story,
        story.pk,
        old=StoryStatus.SCRIPTING,
        new=StoryStatus.DROPPED,
        reason=f"still invalid after {story.repairs} repairs: " + "; ".join(errors),
        script=draft,
        validation_errors=errors,
        planner_model=model,
        lease_until=None,
    )
    return None


def _script_accept(story: Story, script: StoryScript, model: str) -> bool | None:
    with transaction.atomic():
        moved = transition(
            Story,
            story.pk,
            old=StoryStatus.SCRIPTING,
            new=StoryStatus.PENDING_HV2,
            reason=f"valid script after {story.repairs} repairs",
            script=script.model_dump(),
            title=script.title[:200],
            validation_errors=[],
            planner_model=model,
            lease_until=None,
        )
        if moved:
            review_item_open(
                stage="hv2",
                subject_id=story.pk,
                subject_label=f"Story {story.pk}: {script.title}"[:200],
            )
    return None  # the story left scripting either way


# --- HV2 and completion --------------------------------------------------------------------------


def story_apply_review(*, story_id: int, approved: bool, reason: str = "") -> bool:
    """HV2's decision (called once, inside the deciding transaction).

    Approval creates the frames with their control signals and starts their references.
    """
    with transaction.atomic():
        moved = transition(
            Story,
            story_id,
            old=StoryStatus.PENDING_HV2,
            new=StoryStatus.APPROVED if approved else StoryStatus.REJECTED,
            reason=reason or ("HV2 approved" if approved else "HV2 rejected"),
            actor="hv2",
        )
        if moved and approved and settings.HILAPP_PHASE3_AUTOSTART:
            story_frames_start(Story.objects.get(pk=story_id))
    return moved


def story_frames_start(story: Story) -> list[int]:
    """Create the approved story's frames with their control signals and start their
    references (inside the caller's transaction; messages go after commit)."""
    frame_ids = _frames_create(story)
    dispatch.frame_references(frame_ids)
    return frame_ids


def _frames_create(story: Story) -> list[int]:
    script = StoryScript.model_validate(story.script)
    by_cid = {c.cid: c for c in story_cast(story)}
    Frame.objects.bulk_create(
        [Frame(story=story, index=i, frame_text=f.frame_text) for i, f in enumerate(script.frames)]
    )
    frames = list(story.frames.order_by("index"))
    FrameCharacter.objects.bulk_create(
        [
            FrameCharacter(
                frame=frame,
                character=by_cid[ch.cid],
                slot=slot,
                pid=ch.pid,
                eid=ch.eid,
                ctag=ch.ctag,
            )
            for frame, spec in zip(frames, script.frames, strict=True)
            for slot, ch in enumerate(spec.characters)
        ],
        batch_size=500,
    )
    return [f.pk for f in frames]


def story_check_complete(*, story_id: int) -> bool:
    """Complete the story once every frame is approved or discarded. True if this call did."""
    story = Story.objects.filter(pk=story_id, status=StoryStatus.APPROVED).first()
    if story is None:
        return False
    frames = story.frames.all()
    if (
        not frames.exists()
        or frames.exclude(status__in=(FrameStatus.APPROVED, FrameStatus.DISCARDED)).exists()
    ):
        return False
    approved = frames.filter(status=FrameStatus.APPROVED).count()
    return transition(
        Story,
        story_id,
        old=StoryStatus.APPROVED,
        new=StoryStatus.COMPLETE,
        reason=f"{approved} of {frames.count()} frames approved, the rest discarded",
        completed_at=timezone.now(),
    )
