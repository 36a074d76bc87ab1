"""Selectors: what may leave the system, streamed in a stable order.

Only frames approved by the gate or by HV3, not withheld by a sampled audit, in complete stories
(or approved stories still running, when partial stories are asked for), whose characters are
all locked. Rows come from two sorted server-side cursors (frames, then their cast) merged on
``(story_id, index)``, so memory does not grow with the number of frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connections
from django.db.models import QuerySet

from synthesis.models import Character, Frame, FrameCharacter
from synthesis.states import ApprovalPath, AuditStatus, CharacterStatus, FrameStatus, StoryStatus

CHUNK = 2000
WITHHELD_AUDITS = (AuditStatus.PENDING, AuditStatus.REJECTED)


def story_statuses(*, include_partial: bool) -> list[str]:
    statuses = [StoryStatus.COMPLETE.value]
    if include_partial:
        statuses.append(StoryStatus.APPROVED.value)
    return statuses


def exportable_frames(*, include_partial: bool = False) -> QuerySet[Frame]:
    """Frames that may leave, in export order."""
    return (
        Frame.objects.filter(
            status=FrameStatus.APPROVED,
            approval_path__in=ApprovalPath.values,
            story__status__in=story_statuses(include_partial=include_partial),
        )
        .exclude(image="")
        .exclude(audit__in=WITHHELD_AUDITS)
        .exclude(cast__character__status__in=_unlocked())
        .order_by("story_id", "index")
    )


def _unlocked() -> list[str]:
    return [s for s in CharacterStatus.values if s != CharacterStatus.LOCKED]


class CastEntry(NamedTuple):
    character_id: int
    cid: str  # "" when the character is not locked (any more): the frame must not leave
    pid: str
    eid: str
    ctag: str


@dataclass(frozen=True)
class CharacterInfo:
    id: int
    cid: str
    name: str
    subject_category: str
    subject_type: str
    profession_category: str
    profession: str
    template: str


@dataclass(slots=True)
class FrameRecord:
    frame_id: int
    story_id: int
    index: int
    genre: str
    title: str
    text: str
    image: str
    image_sha256: str
    approval_path: str
    audit: str
    synthesizer_model: str
    arbitrator_model: str
    cast: list[CastEntry] = field(default_factory=list)
    key: str = ""  # a WebDataset sample key (sample_key)
    all_locked: bool = True  # every character of the cast is (still) locked

    @property
    def cids(self) -> list[str]:
        return [c.cid for c in self.cast]


def sample_key(story_id: int, index: int) -> str:
    """A frame's WebDataset sample key: no dots, sorts in export order."""
    return f"s{story_id:07d}_f{index:03d}"


def locked_characters() -> dict[int, CharacterInfo]:
    """Every locked character by id (one row per CID: small next to the frames)."""
    rows = Character.objects.filter(status=CharacterStatus.LOCKED).values_list(
        "id",
        "cid",
        "name",
        "subject_category",
        "subject_type",
        "profession_category",
        "profession",
        "template",
    )
    return {row[0]: CharacterInfo(*row) for row in rows.iterator(chunk_size=CHUNK)}


def story_characters(*, include_partial: bool) -> dict[int, frozenset[int]]:
    """Story id → ids of the characters in its exportable frames (for the held-out split)."""
    frames = exportable_frames(include_partial=include_partial)
    pairs = (
        FrameCharacter.objects.filter(frame__in=frames.values("id"))
        .values_list("frame__story_id", "character_id")
        .order_by("frame__story_id", "character_id")
        .distinct()
    )
    acc: dict[int, set[int]] = {}
    for story_id, character_id in rows(pairs):
        acc.setdefault(story_id, set()).add(character_id)
    # Stories whose exportable frames show nobody still count (with no characters).
    for story_id in frames.values_list("story_id", flat=True).distinct().iterator(CHUNK):
        acc.setdefault(story_id, set())
    return {k: frozenset(v) for k, v in sorted(acc.items())}


def rows(queryset: QuerySet[Any]) -> Iterator[tuple[Any, ...]]:
    """The rows of a ``values_list`` query as the database returns them, streamed.

    A server-side cursor on PostgreSQL (``chunked_cursor``, as ``QuerySet.iterator`` uses),
    without building a Python object per row through the ORM: a large export reads hundreds of
    thousands of rows, and only ints and strings, which need no conversion.
    """
    sql, params = queryset.query.sql_with_params()
    with connections[queryset.db].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            yield from chunk


def frame_records(
    *,
    include_partial: bool,
    characters: dict[int, CharacterInfo],
    stories: tuple[int, int] | None = None,
) -> Iterator[FrameRecord]:
    """Every exportable frame with its cast, in ``(story_id, index)`` order, streamed; only
    those of the stories with ids in ``[lo, hi)`` when ``stories`` is given."""
    frames = exportable_frames(include_partial=include_partial)
    casts = FrameCharacter.objects.filter(
        frame__status=FrameStatus.APPROVED,
        frame__story__status__in=story_statuses(include_partial=include_partial),
    )
    if stories is not None:
        frames = frames.filter(story_id__gte=stories[0], story_id__lt=stories[1])
        casts = casts.filter(frame__story_id__gte=stories[0], frame__story_id__lt=stories[1])
    frame_rows = frames.values_list(
        "id",
        "story_id",
        "index",
        "story__genre",
        "story__title",
        "frame_text",
        "image",
        "image_sha256",
        "approval_path",
        "audit",
        "synthesizer_model",
        "arbitrator_model",
    )
    # The cast of every approved frame in a story of the right status: a superset of the
    # exportable frames' cast that spares the database the selection's subqueries; the merge
    # below keeps only the rows of frames that the frame cursor yields.
    cast_rows = rows(
        casts.order_by("frame__story_id", "frame__index", "slot").values_list(
            "frame__story_id", "frame__index", "character_id", "pid", "eid", "ctag"
        )
    )
    pending = next(cast_rows, None)
    for row in rows(frame_rows):
        record = FrameRecord(*row)
        story_id, index = here = row[1], row[2]
        record.key = sample_key(story_id, index)
        cast = record.cast
        # Both cursors are sorted the same way; skip cast rows of frames that left the
        # selection between the two queries (the pipeline keeps running during an export).
        while pending is not None and (pending[0], pending[1]) < here:
            pending = next(cast_rows, None)
        while pending is not None and pending[0] == story_id and pending[1] == index:
            info = characters.get(pending[2])
            if info is None:  # unlocked since the frame query ran: the frame is dropped
                record.all_locked = False
            cid = "" if info is None else info.cid
            cast.append(CastEntry(pending[2], cid, pending[3], pending[4], pending[5]))
            pending = next(cast_rows, None)
        yield record
