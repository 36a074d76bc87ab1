"""Selectors: what may leave the system, streamed in a stable order.

Only frames approved by the gate or by HV3, not withheld by a sampled audit, in complete stories
(or approved ones still running, when asked), whose characters are all locked. Frames stream
from a server-side cursor and their cast is read ``CHUNK`` frames at a time: memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import NamedTuple

from django.db.models import F, QuerySet

from synthesis.models import Character, Frame, FrameCharacter
from synthesis.states import ApprovalPath, AuditStatus, CharacterStatus, FrameStatus, StoryStatus

CHUNK = 2000
WITHHELD_AUDITS = (AuditStatus.PENDING, AuditStatus.REJECTED)
UNLOCKED = [s for s in CharacterStatus.values if s != CharacterStatus.LOCKED]


def exportable_frames(*, include_partial: bool) -> QuerySet[Frame]:
    """Frames that may leave, in export order."""
    stories = [StoryStatus.COMPLETE, *([StoryStatus.APPROVED] if include_partial else [])]
    return (
        Frame.objects.filter(
            status=FrameStatus.APPROVED,
            approval_path__in=ApprovalPath.values,
            story__status__in=stories,
        )
        .exclude(image="")
        .exclude(audit__in=WITHHELD_AUDITS)
        .exclude(cast__character__status__in=UNLOCKED)
        .order_by("story_id", "index")
    )


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
class FrameRecord:  # fields (but the cast) named as the columns that frame_records reads
    id: int
    story_id: int
    index: int
    genre: str
    title: str
    frame_text: str
    image: str
    image_sha256: str
    approval_path: str
    audit: str
    synthesizer_model: str
    arbitrator_model: str
    cast: list[CastEntry] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The frame's WebDataset sample key: no dots, sorts in export order."""
        return f"s{self.story_id:07d}_f{self.index:03d}"


def locked_characters() -> dict[int, CharacterInfo]:
    """Every locked character by id (one row per CID: small next to the frames)."""
    columns = [f.name for f in fields(CharacterInfo)]  # named as the model's fields
    rows = Character.objects.filter(status=CharacterStatus.LOCKED).values_list(*columns)
    return {row[0]: CharacterInfo(*row) for row in rows.iterator(chunk_size=CHUNK)}


def story_characters(*, include_partial: bool) -> dict[int, frozenset[int]]:
    """Story id → ids of the characters in its exportable frames (for the held-out split)."""
    frames = exportable_frames(include_partial=include_partial)
    # A frame that shows nobody gives (story, None): its story still counts, with no characters.
    pairs = frames.values_list("story_id", "cast__character_id").order_by().distinct()
    acc: dict[int, set[int]] = {}
    for story_id, character_id in pairs.iterator(chunk_size=CHUNK):
        cast = acc.setdefault(story_id, set())
        if character_id is not None:
            cast.add(character_id)
    return {k: frozenset(v) for k, v in sorted(acc.items())}


def frame_records(
    *, include_partial: bool, characters: dict[int, CharacterInfo]
) -> Iterator[FrameRecord]:
    """Every exportable frame with its cast, in ``(story_id, index)`` order, streamed."""
    frames = exportable_frames(include_partial=include_partial).annotate(
        genre=F("story__genre"), title=F("story__title")
    )
    columns = [f.name for f in fields(FrameRecord) if f.name != "cast"]
    rows = frames.values_list(*columns).iterator(chunk_size=CHUNK)
    while chunk := [FrameRecord(*row) for row in islice(rows, CHUNK)]:
        by_id = {record.id: record for record in chunk}
        cast = FrameCharacter.objects.filter(frame_id__in=list(by_id)).order_by("frame_id", "slot")
        entries = cast.values_list("frame_id", "character_id", "pid", "eid", "ctag")
        for frame_id, character_id, pid, eid, ctag in entries:
            info = characters.get(character_id)  # None: unlocked since the export began
            cid = info.cid if info else ""
            by_id[frame_id].cast.append(CastEntry(character_id, cid, pid, eid, ctag))
        yield from chunk
