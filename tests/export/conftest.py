"""A simulated dataset: approved frames in complete stories, plus everything that must not leave."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The datasets library reads these when it is imported: never reach the Hub from tests.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synthesis.models import Character
from synthesis.states import (
    ApprovalPath,
    AuditStatus,
    CharacterStatus,
    FrameStatus,
    StoryStatus,
)
from tests.factories import CharacterFactory, StoryFactory, make_frame


@dataclass
class Simulated:
    characters: list[Character]
    expected: set[str] = field(default_factory=set)  # keys of frames that must leave
    partial: set[str] = field(default_factory=set)  # keys that leave only with the flag
    never: set[str] = field(default_factory=set)  # keys that must never leave

    def expected_without(self, story_ids: list[int]) -> set[str]:
        """The expected keys less those of stories the held-out split had to exclude."""
        prefixes = tuple(f"s{sid:07d}_" for sid in story_ids)
        return {k for k in self.expected if not k.startswith(prefixes)}


def key(story_id: int, index: int) -> str:
    return f"s{story_id:07d}_f{index:03d}"


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def simulated(db: Any, media: Path) -> Simulated:
    chars = CharacterFactory.create_batch(12)
    sim = Simulated(characters=chars)
    # Twelve complete stories, two for each pair of characters: holding out two pairs holds
    # out their four stories and leaves the other eight to train.
    for i in range(12):
        cast = [chars[2 * (i % 6)], chars[2 * (i % 6) + 1]]
        story = StoryFactory(cast_of=cast, status=StoryStatus.COMPLETE)
        for j in range(3):
            shown = cast if j != 1 else cast[:1]
            path = ApprovalPath.HV3_UPLOAD if j == 2 and i % 3 == 0 else ApprovalPath.GATE
            make_frame(story, j, shown, approval_path=path)
            sim.expected.add(key(story.pk, j))
        # What must stay home, in a complete story:
        make_frame(story, 3, cast, status=FrameStatus.DISCARDED, approval_path="")
        sim.never.add(key(story.pk, 3))
        if i % 2 == 0:
            make_frame(story, 4, cast, audit=AuditStatus.PENDING)
            make_frame(story, 5, cast, audit=AuditStatus.REJECTED)
            make_frame(story, 6, cast, status=FrameStatus.HARD_FAILED, approval_path="")
            sim.never |= {key(story.pk, 4), key(story.pk, 5), key(story.pk, 6)}
        else:
            make_frame(story, 4, cast, audit=AuditStatus.CONFIRMED)  # an audit that passed
            sim.expected.add(key(story.pk, 4))
    # A partial story: approved, one frame still rendering.
    partial = StoryFactory(cast_of=chars[:2], status=StoryStatus.APPROVED)
    make_frame(partial, 0, chars[:2])
    make_frame(partial, 1, chars[:1], status=FrameStatus.RENDERING, approval_path="")
    sim.partial.add(key(partial.pk, 0))
    sim.never.add(key(partial.pk, 1))
    # Approved frames in stories that never leave, and a frame with a rejected character.
    for status in (StoryStatus.REJECTED, StoryStatus.PENDING_HV2):
        story = StoryFactory(cast_of=chars[2:4], status=status)
        make_frame(story, 0, chars[2:4])
        sim.never.add(key(story.pk, 0))
    rejected = CharacterFactory(status=CharacterStatus.REJECTED)
    story = StoryFactory(cast_of=[chars[4], chars[5], rejected], status=StoryStatus.COMPLETE)
    make_frame(story, 0, [chars[4], chars[5]])
    make_frame(story, 1, [chars[5], rejected])
    sim.expected.add(key(story.pk, 0))
    sim.never.add(key(story.pk, 1))
    return sim
