"""The character-disjoint held-out split.

Held-out stories use only held-out characters, and no held-out character appears in training:
stories that mix held-out and training characters belong to neither split (they are counted as
``excluded`` in the manifest). Deterministic for a seed: stories are shuffled from their sorted
ids with ``random.Random(seed)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from synthesis.export.options import ExportError

TRAIN = "train"
HELDOUT = "heldout"
SPLITS = (TRAIN, HELDOUT)


@dataclass(frozen=True)
class SplitPlan:
    heldout_characters: frozenset[int]
    heldout_stories: frozenset[int]
    train_stories: frozenset[int] | None  # None: every story (nothing is held out)
    excluded_stories: frozenset[int]

    @classmethod
    def all_train(cls) -> SplitPlan:
        """Nothing held out: no story needs looking at before the frames stream."""
        return cls(frozenset(), frozenset(), None, frozenset())

    def split_of(self, story_id: int, character_ids: Iterable[int]) -> str | None:
        """The split of a frame, or None when it must not leave (its story is in neither split,
        or appeared after the plan was made, or a character crossed the line since)."""
        if self.train_stories is None:
            return TRAIN
        held = [c in self.heldout_characters for c in character_ids]
        if story_id in self.heldout_stories and all(held):
            return HELDOUT
        if story_id in self.train_stories and not any(held):
            return TRAIN
        return None


def split_plan(
    story_characters: Mapping[int, frozenset[int]],
    *,
    holdout_characters: int,
    holdout_stories: int,
    seed: int,
) -> SplitPlan:
    """Choose held-out characters through the stories that can be held out with them.

    Walk the stories in a seeded order and take each one whose characters still fit in the
    held-out budget, until ``holdout_stories`` are taken; then top the held-out characters up to
    ``holdout_characters`` from the remaining characters in the same seeded way.
    """
    all_characters = sorted(set().union(*story_characters.values())) if story_characters else []
    if holdout_characters > len(all_characters):
        raise ExportError(
            f"Asked to hold out {holdout_characters} characters, but the exportable frames "
            f"show only {len(all_characters)}."
        )
    if holdout_stories > len(story_characters):
        raise ExportError(
            f"Asked to hold out {holdout_stories} stories, but only {len(story_characters)} "
            "stories have exportable frames."
        )
    rng = random.Random(seed)
    order = sorted(story_characters)
    rng.shuffle(order)
    held_chars: set[int] = set()
    held_stories: set[int] = set()
    # Two passes: a story skipped early may fit once later stories brought its characters in.
    for story_id in order + order:
        if len(held_stories) >= holdout_stories:
            break
        cast = story_characters[story_id]
        if not cast or story_id in held_stories:
            continue  # a story without characters cannot test unseen characters
        if len(held_chars | cast) <= holdout_characters:
            held_chars |= cast
            held_stories.add(story_id)
    if len(held_stories) < holdout_stories:
        raise ExportError(
            f"Only {len(held_stories)} stories can be held out with {holdout_characters} "
            f"characters (asked for {holdout_stories}); hold out more characters or fewer "
            "stories."
        )
    if len(held_chars) < holdout_characters:
        rest = [c for c in all_characters if c not in held_chars]
        rng.shuffle(rest)
        held_chars.update(rest[: holdout_characters - len(held_chars)])
    train: set[int] = set()
    excluded: set[int] = set()
    for story_id, cast in story_characters.items():
        if story_id in held_stories:
            continue
        (excluded if cast & held_chars else train).add(story_id)
    return SplitPlan(
        heldout_characters=frozenset(held_chars),
        heldout_stories=frozenset(held_stories),
        train_stories=frozenset(train),
        excluded_stories=frozenset(excluded),
    )
