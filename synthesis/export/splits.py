"""The character-disjoint held-out split.

Held-out stories use only held-out characters, and no held-out character appears in training:
stories that mix held-out and training characters belong to neither split (``excluded``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from synthesis.export.options import ExportError, ExportOptions

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class SplitPlan:
    heldout_characters: frozenset[int] = frozenset()
    heldout_stories: frozenset[int] = frozenset()
    train_stories: frozenset[int] | None = None  # None: every story (nothing is held out)
    excluded_stories: frozenset[int] = frozenset()

    def split_of(self, story_id: int, character_ids: Iterable[int]) -> str | None:
        """The split of a frame, or None when it must not leave (its story is in neither split,
        or appeared after the plan was made, or a character crossed the line since)."""
        if self.train_stories is None:
            return "train"
        held = [c in self.heldout_characters for c in character_ids]
        if story_id in self.heldout_stories and all(held):
            return "heldout"
        if story_id in self.train_stories and not any(held):
            return "train"
        return None


def split_plan(story_characters: Mapping[int, frozenset[int]], options: ExportOptions) -> SplitPlan:
    """Choose held-out characters through the stories that can be held out with them: walk the
    stories in a seeded order and take each one whose characters still fit in the budget, until
    enough are taken; then top the held-out characters up from the rest in the same seeded way."""
    holdout_characters, holdout_stories = options.holdout_characters, options.holdout_stories
    all_characters = sorted(set().union(*story_characters.values()))
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
    rng = random.Random(options.seed)
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
            f"characters (asked for {holdout_stories}); hold out more characters or fewer stories."
        )
    if len(held_chars) < holdout_characters:
        rest = [c for c in all_characters if c not in held_chars]
        rng.shuffle(rest)
        held_chars.update(rest[: holdout_characters - len(held_chars)])
    others = frozenset(story_characters) - held_stories
    train = frozenset(s for s in others if not story_characters[s] & held_chars)
    return SplitPlan(frozenset(held_chars), frozenset(held_stories), train, others - train)
