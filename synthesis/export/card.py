"""Dataset statistics, their plots and the dataset card (``README.md``).

Statistics are counters filled while frames stream past (their size depends on the vocabulary
and the number of stories, not on images). Plots are drawn with matplotlib's Agg canvas (no
pyplot global state) and saved without the software/date metadata, so the same statistics give
byte-identical PNGs.
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
class DatasetStats:
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
        chars = self.characters.setdefault(split, set())
        self.character_count[len(record.cast)] += 1
        if record.story_id not in self.story_frames:
            self.genres[record.genre] += 1
        self.story_frames[record.story_id] += 1
        self.approval_paths[record.approval_path] += 1
        for entry in record.cast:
            chars.add(entry.character_id)
            self.poses[entry.pid] += 1
            self.expressions[entry.eid] += 1
            self.compositions[entry.ctag] += 1

    def sequence_lengths(self) -> Counter[int]:
        return Counter(self.story_frames.values())

    def characters_used(self) -> set[int]:
        return set().union(*self.characters.values())

    def summary(self, characters: dict[int, CharacterInfo]) -> dict[str, Any]:
        joint = Counter(
            f"{characters[c].subject_category} × {characters[c].profession_category}"
            for c in self.characters_used()
            if c in characters
        )
        return {
            "frames": dict(sorted(self.frames.items())),
            "stories": {k: len(v) for k, v in sorted(self.stories.items())},
            "characters": {k: len(v) for k, v in sorted(self.characters.items())},
            "characters_per_frame": _sorted(self.character_count),
            "frames_per_story": _sorted(self.sequence_lengths()),
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
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    fig.tight_layout()
    _save(fig, path)


def _heatmap(path: Path, characters: list[CharacterInfo]) -> None:
    rows = sorted({c.subject_category for c in characters}) or ["-"]
    cols = sorted({c.profession_category for c in characters}) or ["-"]
    grid = [[0] * len(cols) for _ in rows]
    for c in characters:
        grid[rows.index(c.subject_category)][cols.index(c.profession_category)] += 1
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
# The card's statistics sections: heading, plots (``card/<name>.png``), tables (summary key,
# column head).
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
    plots = out / PLOT_DIR
    plots.mkdir(parents=True, exist_ok=True)
    summary = stats.summary(characters)
    for name, title, xlabel in BARS:
        _bar(plots / f"{name}.png", summary[name], title, xlabel)
    infos = [characters[c] for c in sorted(stats.characters_used()) if c in characters]
    _heatmap(plots / "subject_x_profession.png", infos)
    for what, counter in CONTROLS:
        _frequencies(plots / f"{what}_frequencies.png", what, getattr(stats, counter))
    (out / "README.md").write_text(_card_text(summary, manifest_counts, layout))


def _table(counts: dict[str, int], head: str) -> str:
    lines = [f"| {head} | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join(lines)


def _section(
    summary: dict[str, Any], heading: str, plots: list[str], tables: list[tuple[str, str]]
) -> str:
    parts = [f"### {heading}"]
    if plots:
        parts.append("\n".join(f"![{p.replace('_', ' ')}]({PLOT_DIR}/{p}.png)" for p in plots))
    parts += [_table(summary[key], head) for key, head in tables]
    return "\n\n".join(parts)


def _card_text(summary: dict[str, Any], counts: dict[str, Any], layout: dict[str, str]) -> str:
    layout_lines = "\n".join(f"- `{path}`: {what}" for path, what in layout.items())
    statistics = "\n\n".join(_section(summary, *section) for section in SECTIONS)
    return f"""---
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

{_table({k: v for k, v in counts.items() if not isinstance(v, dict)}, "what")}

Frames by split: {summary["frames"]}; stories by split: {summary["stories"]};
characters by split: {summary["characters"]}.

## Files

{layout_lines}

## Statistics

{statistics}
"""
