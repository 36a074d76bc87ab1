"""Server-side plots of the statistics (matplotlib, Agg), cached per data version.

Each plot draws one entry of ``statistics_all()``; with no data it draws a labelled empty chart,
never an error. PNGs are cached under ``hilapp:plot:<name>:<data version>``, so a plot is redrawn
only after the data changed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
from django.core.cache import cache
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from synthesis.services.statistics import CACHE_SECONDS, statistics_all

Draw = Callable[[Axes, dict[str, Any]], None]
COLOURS = ["#3056d3", "#1f8a4c", "#c2352b", "#b7791f", "#6b46c1", "#2c7a7b", "#718096"]


def _empty(ax: Axes, message: str = "no data yet") -> None:
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        color="#6b7385",
        fontsize=12,
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax: Axes, dist: dict[str, int], xlabel: str, ylabel: str = "count") -> None:
    if not any(dist.values()):
        _empty(ax)
        return
    ax.bar(list(dist), list(dist.values()), color=COLOURS[0])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def draw_heatmap(ax: Axes, s: dict[str, Any]) -> None:
    h = s["heatmap"]
    counts = h["counts"]
    peak = max((n for row in counts for n in row), default=0)
    image = ax.imshow(counts, cmap="Blues", aspect="auto", vmin=0, vmax=max(peak, 1))
    ax.set_xticks(
        range(len(h["professions"])), h["profession_labels"], rotation=20, ha="right", fontsize=8
    )
    ax.set_yticks(range(len(h["subjects"])), h["subject_labels"], fontsize=8)
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8)
    ax.figure.colorbar(image, ax=ax)
    ax.set_title(f"Locked characters ({h['total']})")


def draw_characters_per_story(ax: Axes, s: dict[str, Any]) -> None:
    _bars(ax, s["characters_per_story"], "characters in the story", "stories")


def draw_frames_per_story(ax: Axes, s: dict[str, Any]) -> None:
    _bars(ax, s["frames_per_story"], "frames in the script", "stories")


def draw_viescore(ax: Axes, s: dict[str, Any]) -> None:
    v = s["viescore"]
    bins = v["bins"]
    if not (v["character"]["n"] or v["reference"]["n"]):
        _empty(ax)
        return
    width = (bins[1] - bins[0]) / 2.2
    for k, kind in enumerate(("character", "reference")):
        xs = [b + k * width for b in bins[:-1]]
        ax.bar(
            xs,
            v[kind]["counts"],
            width=width,
            align="edge",
            color=COLOURS[k],
            label=f"{kind} (n={v[kind]['n']})",
        )
    ax.axvline(7.0, color="#c2352b", linestyle="--", linewidth=1, label="threshold 7.0")
    ax.set_xlabel("VIEScore (overall)")
    ax.set_ylabel("attempts")
    ax.legend(fontsize=8)


def _rate_bars(ax: Axes, labels: list[str], rows: list[dict[str, Any]]) -> None:
    if not any(r["total"] for r in rows):
        _empty(ax)
        return
    rates = [(r["rate"] or 0) * 100 for r in rows]
    ax.barh(labels, rates, color=COLOURS[1])
    for y, r in enumerate(rows):
        ax.text(1, y, f"{r['passed']}/{r['total']}", va="center", fontsize=8, color="white")
    ax.set_xlim(0, 100)
    ax.set_xlabel("pass rate (%)")
    ax.tick_params(axis="y", labelsize=8)


def draw_pass_rate_stage(ax: Axes, s: dict[str, Any]) -> None:
    rows = s["pass_rate_stage"]
    _rate_bars(ax, [r["stage"] for r in rows], rows)


def draw_pass_rate_model(ax: Axes, s: dict[str, Any]) -> None:
    rows = s["pass_rate_model"]
    _rate_bars(ax, [f"{r['gate']} · {r['model']}" for r in rows], rows)


def draw_apt(ax: Axes, s: dict[str, Any]) -> None:
    a = s["apt"]
    _bars(ax, a["histogram"], "edit iterations per reference", "references")
    if a["mean"] is not None:
        ax.set_title(f"mean {a['mean']:.2f} among {a['failed_once']} that failed once")


def draw_iqcc(ax: Axes, s: dict[str, Any]) -> None:
    o = s["iqcc_outcomes"]
    _bars(ax, {k: v for k, v in o.items() if k != "other" or v}, "IQCC verdict", "attempts")


def draw_attempts_per_frame(ax: Axes, s: dict[str, Any]) -> None:
    a = s["attempts_per_frame"]
    _bars(ax, a["histogram"], "frame attempts", "frames")
    e = s["hv3_escalation"]
    if e["rate"] is not None:
        ax.set_title(f"HV3 escalation {e['rate'] * 100:.1f}% of {e['frames']} frames")


def draw_queue_depth(ax: Axes, s: dict[str, Any]) -> None:
    q = s["queue_depth"]
    if not q:
        _empty(ax)
        return
    for k, (stage, series) in enumerate(q.items()):
        xs = [datetime.fromisoformat(t) for t, _ in series]
        ax.step(
            mdates.date2num(xs),
            [d for _, d in series],
            where="post",
            label=stage,
            color=COLOURS[k % len(COLOURS)],
        )
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylabel("open items")
    ax.legend(fontsize=8)


def draw_decisions_per_day(ax: Axes, s: dict[str, Any]) -> None:
    d = s["decisions_per_day"]
    if not d:
        _empty(ax)
        return
    days = list(d)
    stages = sorted({stage for per in d.values() for stage in per})
    bottom = [0] * len(days)
    for k, stage in enumerate(stages):
        values = [d[day].get(stage, 0) for day in days]
        ax.bar(days, values, bottom=bottom, label=stage, color=COLOURS[k % len(COLOURS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("decisions")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def draw_kappa(ax: Axes, s: dict[str, Any]) -> None:
    rows = [r for r in s["kappa"] if r["kappa"] is not None]
    if not rows:
        _empty(ax, "no decided items with two or more votes")
        return
    ax.bar([r["stage"] for r in rows], [r["kappa"] for r in rows], color=COLOURS[4])
    ax.axhline(0, color="#1d2330", linewidth=0.8)
    ax.set_ylim(min(-0.2, *(r["kappa"] for r in rows)), 1)
    ax.set_ylabel("Fleiss' κ")


def draw_cost(ax: Axes, s: dict[str, Any]) -> None:
    c = s["cost_per_approved_frame"]
    rows = [r for r in c["by"] if r["per_frame_usd"]]
    if not rows:
        _empty(ax, "no approved frames yet" if not c["approved_frames"] else "no spend")
        return
    ax.barh(
        [f"{r['provider']} · {r['role']}" for r in rows],
        [r["per_frame_usd"] for r in rows],
        color=COLOURS[3],
    )
    ax.set_xlabel("USD per approved frame")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(f"total {c['per_frame_usd']:.4f} USD per frame ({c['approved_frames']} frames)")


def draw_latency(ax: Axes, s: dict[str, Any]) -> None:
    rows = s["latency"]
    if not rows:
        _empty(ax)
        return
    labels = [f"{r['model']} · {r['role']}" for r in rows]
    height = 0.27
    for k, q in enumerate(("p50", "p90", "p99")):
        ys = [i + (k - 1) * height for i in range(len(rows))]
        ax.barh(ys, [r[q] or 0 for r in rows], height=height, label=q, color=COLOURS[k])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel("latency (ms)")
    ax.legend(fontsize=8)


def draw_audit(ax: Axes, s: dict[str, Any]) -> None:
    a = s["audit"]
    if not a["decided"]:
        _empty(ax, f"no decided audits yet ({a['pending']} pending)")
        return
    rate = a["false_accept_rate"] * 100
    lo, hi = (x * 100 for x in a["ci95"])
    ax.errorbar([0], [rate], yerr=[[rate - lo], [hi - rate]], fmt="o", capsize=8, color=COLOURS[2])
    ax.set_xlim(-1, 1)
    ax.set_xticks([0], ["IQCC gate"])
    ax.set_ylim(0, max(hi * 1.2, 5))
    ax.set_ylabel("false-accept rate (%)")
    ax.set_title(f"{a['rejected']} rejected of {a['decided']} audited (95% Wilson CI)")


# name -> (title, drawer, figure size)
PLOTS: dict[str, tuple[str, Draw, tuple[float, float]]] = {
    "heatmap": ("Subject × profession category (locked CIDs)", draw_heatmap, (7.5, 4.8)),
    "characters_per_story": ("Characters per story", draw_characters_per_story, (5, 3.2)),
    "frames_per_story": ("Frames per story", draw_frames_per_story, (5, 3.2)),
    "viescore": ("VIEScore distributions", draw_viescore, (6, 3.2)),
    "pass_rate_stage": ("Pass rate per stage", draw_pass_rate_stage, (6, 3.2)),
    "pass_rate_model": ("Pass rate per model", draw_pass_rate_model, (6, 3.2)),
    "apt": ("APT iterations (references)", draw_apt, (5, 3.2)),
    "iqcc_outcomes": ("IQCC outcomes", draw_iqcc, (5, 3.2)),
    "attempts_per_frame": ("Attempts per frame", draw_attempts_per_frame, (5, 3.2)),
    "queue_depth": ("Review queue depth", draw_queue_depth, (6, 3.2)),
    "decisions_per_day": ("Decisions per day", draw_decisions_per_day, (6, 3.2)),
    "kappa": ("Fleiss' kappa per stage", draw_kappa, (5, 3.2)),
    "cost_per_approved_frame": ("Cost per approved frame", draw_cost, (6, 3.2)),
    "latency": ("Model latency percentiles", draw_latency, (6, 3.2)),
    "audit": ("Gate audit: false-accept rate", draw_audit, (5, 3.2)),
}


def render_plot(name: str, stats: dict[str, Any]) -> bytes:
    title, draw, size = PLOTS[name]
    figure = Figure(figsize=size, dpi=100)
    ax = figure.add_subplot()
    draw(ax, stats)
    if not ax.get_title():
        ax.set_title(title, fontsize=10)
    else:
        ax.set_title(ax.get_title(), fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_png(name: str) -> bytes:
    """The PNG of plot ``name`` for the current data (KeyError for an unknown name)."""
    if name not in PLOTS:
        raise KeyError(name)
    stats = statistics_all()
    key = f"hilapp:plot:{name}:{stats['version']}"
    png = cache.get(key)
    if png is None:
        png = render_plot(name, stats)
        cache.set(key, png, CACHE_SECONDS)
    return bytes(png)
