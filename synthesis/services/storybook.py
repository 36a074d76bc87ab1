"""Selectors for the admins' story pages: the gallery of finished stories, one story as a
storybook (frames in order, characters, IDs, approval path), and the gate-audit queue.

A story is finished when Phase III is over for it (``complete``: every frame approved or
discarded). The pages read; nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from hilapp.media import media_url
from review.models import ReviewItem, Stage
from synthesis.models import Frame, FrameCharacter, Story, StoryCast
from synthesis.states import ApprovalPath, AuditStatus, FrameStatus, StoryStatus
from synthesis.vocabulary import UnknownControlId, load_vocabulary

GALLERY_LIMIT = 60
FINISHED = (StoryStatus.COMPLETE,)


def describe(control_id: str) -> str:
    try:
        return load_vocabulary().describe(control_id)
    except UnknownControlId:
        return "not in the control vocabulary"


@dataclass(frozen=True)
class GalleryFilter:
    """What the gallery's form parsed (blank: no filter)."""

    genre: str = ""
    cast_size: int | None = None
    character: str = ""
    approval_path: str = ""


def story_genres() -> list[str]:
    return list(
        Story.objects.filter(status__in=FINISHED)
        .order_by("genre")
        .values_list("genre", flat=True)
        .distinct()
    )


def _gallery_queryset(filters: GalleryFilter) -> QuerySet[Story]:
    stories = Story.objects.filter(status__in=FINISHED).annotate(
        cast_size=Count("cast", distinct=True)
    )
    if filters.genre:
        stories = stories.filter(genre=filters.genre)
    if filters.cast_size is not None:
        stories = stories.filter(cast_size=filters.cast_size)
    if filters.character:
        term = filters.character
        stories = stories.filter(
            Exists(
                StoryCast.objects.filter(story=OuterRef("pk")).filter(
                    Q(character__cid__iexact=term) | Q(character__name__icontains=term)
                )
            )
        )
    if filters.approval_path:
        stories = stories.filter(
            Exists(
                Frame.objects.filter(
                    story=OuterRef("pk"),
                    status=FrameStatus.APPROVED,
                    approval_path=filters.approval_path,
                )
            )
        )
    return stories


def story_gallery(filters: GalleryFilter, *, limit: int = GALLERY_LIMIT) -> dict[str, Any]:
    """Finished stories matching ``filters``, newest first, each with a cover and its cast."""
    stories = list(
        _gallery_queryset(filters)
        .order_by("-completed_at", "-pk")
        .prefetch_related(
            Prefetch("cast", queryset=StoryCast.objects.select_related("character")),
            Prefetch(
                "frames",
                queryset=Frame.objects.filter(status=FrameStatus.APPROVED).only(
                    "id", "story_id", "index", "image", "approval_path", "status"
                ),
                to_attr="approved_frames",
            ),
        )[: limit + 1]
    )
    cards = []
    for story in stories[:limit]:
        approved = sorted(story.approved_frames, key=lambda f: f.index)
        cover = next((f for f in approved if f.image), None)
        cards.append(
            {
                "id": story.pk,
                "title": story.title or f"Story {story.pk}",
                "genre": story.genre,
                "cast": [
                    {"name": c.character.name, "cid": c.character.cid} for c in story.cast.all()
                ],
                "cast_size": story.cast_size,  # type: ignore[attr-defined]
                "frames": len(approved),
                "paths": sorted({f.approval_path for f in approved if f.approval_path}),
                "cover_url": media_url(cover.image) if cover else "",
                "completed_at": story.completed_at,
            }
        )
    return {"stories": cards, "more": len(stories) > limit}


def _review_summary(stage: str, subject_ids: list[int]) -> dict[int, dict[str, Any]]:
    items = ReviewItem.objects.filter(stage=stage, subject_id__in=subject_ids).values(
        "id", "subject_id", "status", "decided_choice", "decided_at", "votes_count"
    )
    return {item["subject_id"]: dict(item) for item in items}


def story_book(*, story_id: int) -> dict[str, Any]:
    """One story as a storybook. Raises ``Story.DoesNotExist``."""
    story = Story.objects.select_related("batch", "frames_batch").get(pk=story_id)
    cast = [
        {
            "name": c.character.name,
            "cid": c.character.cid,
            "template_url": media_url(c.character.template),
            "description": c.character.visual_description,
        }
        for c in story.cast.select_related("character")
    ]
    frames = list(
        story.frames.order_by("index").prefetch_related(
            Prefetch(
                "cast",
                queryset=FrameCharacter.objects.select_related("character").order_by("slot"),
            )
        )
    )
    hv3 = _review_summary(Stage.HV3, [f.pk for f in frames])
    audits = _review_summary(Stage.AUDIT, [f.pk for f in frames])
    pages = []
    for frame in frames:
        pages.append(
            {
                "id": frame.pk,
                "number": frame.index + 1,
                "text": frame.frame_text,
                "status": frame.status,
                "status_label": frame.get_status_display(),
                "image_url": media_url(frame.image) if frame.image else "",
                "approval_path": frame.approval_path,
                "approval_label": ApprovalPath(frame.approval_path).label
                if frame.approval_path
                else "",
                "audit": frame.audit,
                "audit_label": AuditStatus(frame.audit).label if frame.audit else "",
                "hv3": hv3.get(frame.pk),
                "audit_item": audits.get(frame.pk),
                "round": frame.round,
                "synthesizer_model": frame.synthesizer_model,
                "arbitrator_model": frame.arbitrator_model,
                "characters": [
                    {
                        "name": fc.character.name,
                        "cid": fc.character.cid,
                        "pid": fc.pid,
                        "eid": fc.eid,
                        "ctag": fc.ctag,
                        "pose": describe(fc.pid),
                        "expression": describe(fc.eid),
                        "composition": describe(fc.ctag),
                        "reference_url": media_url(fc.reference) if fc.reference else "",
                    }
                    for fc in frame.cast.all()
                ],
            }
        )
    hv2 = _review_summary(Stage.HV2, [story.pk]).get(story.pk)
    return {
        "story": story,
        "cast": cast,
        "frames": pages,
        "hv2": hv2,
        "approved": sum(1 for p in pages if p["status"] == FrameStatus.APPROVED),
        "discarded": sum(1 for p in pages if p["status"] == FrameStatus.DISCARDED),
    }


def audit_queue(*, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """Gate-audit items: those still open (with their votes so far) and the latest decided."""
    items = ReviewItem.objects.filter(stage=Stage.AUDIT)
    open_items = list(items.filter(decided_at__isnull=True).order_by("created_at")[:limit])
    decided = list(items.filter(decided_at__isnull=False).order_by("-decided_at")[:limit])
    frames = {
        f.pk: f
        for f in Frame.objects.filter(
            pk__in=[i.subject_id for i in open_items + decided]
        ).select_related("story")
    }

    def row(item: ReviewItem) -> dict[str, Any]:
        frame = frames.get(item.subject_id)
        return {
            "item": item,
            "frame": frame,
            "image_url": media_url(frame.image) if frame and frame.image else "",
        }

    return {"open": [row(i) for i in open_items], "decided": [row(i) for i in decided]}


def batch_stories(*, batch_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The stories a batch wrote or renders, for the batch page's links to their storybooks."""
    stories = (
        Story.objects.filter(Q(batch_id=batch_id) | Q(frames_batch_id=batch_id))
        .annotate(
            approved=Count("frames", filter=Q(frames__status=FrameStatus.APPROVED)),
            frame_count=Count("frames"),
        )
        .order_by("pk")
        .values("id", "title", "status", "genre", "approved", "frame_count")[:limit]
    )
    return [dict(s) for s in stories]
