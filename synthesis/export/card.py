"""Dataset statistics, their plots and the dataset card (``README.md``).

Plots are drawn on matplotlib's Agg canvas (no pyplot global state) and saved without the
software/date metadata, so the same statistics give byte-identical PNGs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from synthesis.export.selection import CharacterInfo, FrameRecord

PLOT_DIR = "card"


@dataclass
class DatasetStats:  # counters filled as frames stream past: their size does not grow with them
    frames: Counter[str] = field(default_factory=Counter)  # by split
    stories: dict[str, set[int]] = field(default_factory=dict)  # by split
    characters: dict[str, set[int]] = field(default_factory=dict)  # by split
    character_count: Counter[int] = field(default_factory=Counter)  # characters per frame
    story_frames: Counter[int] = field(default_factory=Counter)  # frames per story
    poses: Counter[str] = field(default_factory=Counter)
    expressions: Counter[str] = field(default_factory=Counter)
    compositions: Counter[str] = field(default_factory=Counter)
    genres: Counter[str] = field(default_factory=Counter)
    approval_paths: Counter[str] = field(default_factory=Counter)

    def add(self, record: FrameRecord, split: str) -> None:
        self.frames[split] += 1
        self.stories.setdefault(split, set()).add(record.story_id)
        self.characters.setdefault(split, set()).update(c.character_id for c in record.cast)
        self.character_count[len(record.cast)] += 1
        if record.story_id not in self.story_frames:
            self.genres[record.genre] += 1
        self.story_frames[record.story_id] += 1
        self.approval_paths[record.approval_path] += 1
        self.poses.update(c.pid for c in record.cast)
        self.expressions.update(c.eid for c in record.cast)
        self.compositions.update(c.ctag for c in record.cast)

    def shown(self, characters: dict[int, CharacterInfo]) -> list[CharacterInfo]:
        """The characters the frames show, by id (all locked: no other character leaves)."""
        return [characters[c] for c in sorted(set().union(*self.characters.values()))]

    def summary(self, characters: dict[int, CharacterInfo]) -> dict[str, Any]:
        shown = self.shown(characters)
        joint = Counter(f"{c.subject_category} × {c.profession_category}" for c in shown)
        return {
            "frames": dict(sorted(self.frames.items())),
            "stories": {k: len(v) for k, v in sorted(self.stories.items())},
            "characters": {k: len(v) for k, v in sorted(self.characters.items())},
            "characters_per_frame": _sorted(self.character_count),
            "frames_per_story": _sorted(Counter(self.story_frames.values())),
            "genres": _sorted(self.genres),
            "approval_paths": _sorted(self.approval_paths),
            "poses": _sorted(self.poses),
            "expressions": _sorted(self.expressions),
            "compositions": _sorted(self.compositions),
            "subject_x_profession": _sorted(joint),
        }


def _sorted(counter: Counter[Any]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]).zfill(8))}


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _bar(path: Path, counts: dict[str, int], title: str, xlabel: str) -> None:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.bar(range(len(counts)), list(counts.values()), color="#4c72b0")
    ax.set_xticks(range(len(counts)), list(counts))
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    fig.tight_layout()
    _save(fig, path)


def _heatmap(path: Path, characters: list[CharacterInfo]) -> None:
    pairs = Counter((c.subject_category, c.profession_category) for c in characters)
    rows = sorted({row for row, _ in pairs}) or ["-"]
    cols = sorted({col for _, col in pairs}) or ["-"]
    grid = [[pairs[row, col] for col in cols] for row in rows]
    fig = Figure(figsize=(7, 0.45 * len(rows) + 2))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="w", fontsize=8)
    ax.set_title("Characters: subject category × profession category")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    _save(fig, path)


def _frequencies(path: Path, what: str, counter: Counter[str]) -> None:
    """A horizontal bar per value of one control (pose, expression or composition tag)."""
    items = sorted(counter.items())
    fig = Figure(figsize=(5, max(3.0, 0.18 * len(items) + 1.5)))
    ax = fig.add_subplot()
    ax.barh(range(len(items)), [v for _, v in items], color="#55a868")
    ax.set_yticks(range(len(items)), [k for k, _ in items])
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{what} frequency")
    # Fixed margins: tight_layout measures every label and costs seconds with ~60 of them.
    fig.subplots_adjust(left=0.3, right=0.97, top=0.95, bottom=0.05)
    _save(fig, path)


BARS = (  # plot and summary key, title, x label
    ("characters_per_frame", "Characters per frame", "characters in the frame"),
    ("frames_per_story", "Frames per story (sequence length)", "exported frames in the story"),
)
# Plots of one control each: (what, the DatasetStats counter).
CONTROLS = (("pose", "poses"), ("expression", "expressions"), ("composition", "compositions"))
# The card's statistics sections: heading, plots (card/<name>.png), tables (key, column head).
SECTIONS: tuple[tuple[str, list[str], list[tuple[str, str]]], ...] = (
    ("Characters per frame", ["characters_per_frame"], [("characters_per_frame", "characters")]),
    ("Sequence length (frames per story)", ["frames_per_story"], [("frames_per_story", "frames")]),
    (
        "Subject category × profession category",
        ["subject_x_profession"],
        [("subject_x_profession", "subject × profession")],
    ),
    (
        "Pose, expression and composition frequencies",
        [f"{what}_frequencies" for what, _ in CONTROLS],
        [(key, what) for what, key in CONTROLS],
    ),
    ("Genres and approval paths", [], [("genres", "genre"), ("approval_paths", "approval path")]),
)


def write_card(
    out: Path,
    *,
    stats: DatasetStats,
    characters: dict[int, CharacterInfo],
    manifest_counts: dict[str, Any],
    layout: dict[str, str],
) -> None:
    """Draw the plots and write ``README.md``."""
    folder = out / PLOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    summary = stats.summary(characters)
    for name, title, xlabel in BARS:
        _bar(folder / f"{name}.png", summary[name], title, xlabel)
    _heatmap(folder / "subject_x_profession.png", stats.shown(characters))
    for what, counter in CONTROLS:
        _frequencies(folder / f"{what}_frequencies.png", what, getattr(stats, counter))
    layout_lines = "\n".join(f"- `{path}`: {what}" for path, what in layout.items())
    sections = []
    for heading, plots, tables in SECTIONS:
        images = "\n".join(f"![{p.replace('_', ' ')}]({PLOT_DIR}/{p}.png)" for p in plots)
        parts = [f"### {heading}", images, *(_table(summary[k], head) for k, head in tables)]
        sections.append("\n\n".join(part for part in parts if part))
    statistics = "\n\n".join(sections)
    card = f"""---
license: other
task_categories:
- text-to-image
tags:
- multi-character
- story-visualization
- webdataset
---

# hilapp synthetic multi-character story dataset

Frames approved by the automatic quality gate or by a human (HV3), from complete stories,
with the locked character identity templates (CIDs) they were made from. Nothing rejected,
discarded, pending, hard-failed or withheld by an audit is included.

## Splits

The held-out split is character-disjoint: its stories use only held-out characters, and no
held-out character appears in the training split. Stories that mix both are in neither.

{_table(manifest_counts, "what")}

Frames by split: {summary["frames"]}; stories by split: {summary["stories"]};
characters by split: {summary["characters"]}.

## Files

{layout_lines}

## Statistics

{statistics}
"""
    (out / "README.md").write_text(card)


def _table(counts: dict[str, int], head: str) -> str:
    rows = [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join([f"| {head} | count |", "|---|---:|", *rows])
